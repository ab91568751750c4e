package dev.multifdcolo.qemu;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.function.BooleanSupplier;

/** Connecting to a unix socket that a just-started QEMU is about to create. */
final class UnixSockets {
    private UnixSockets() {
    }

    /**
     * Connects to {@code socket}, retrying while it does not exist yet or refuses connections.
     *
     * @param keepTrying checked between attempts; when it turns false (e.g. QEMU exited) we give up at once
     */
    static SocketChannel connect(Path socket, Duration timeout, BooleanSupplier keepTrying) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        IOException last = null;
        long pauseMillis = 5;
        while (true) {
            if (Files.exists(socket)) {
                SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                try {
                    ch.connect(UnixDomainSocketAddress.of(socket));
                    return ch;
                } catch (IOException e) {
                    last = e;
                    ch.close();
                }
            }
            if (!keepTrying.getAsBoolean()) {
                throw new IOException("gave up connecting to " + socket + " (the process is gone)", last);
            }
            if (System.nanoTime() - deadline > 0) {
                throw new QemuTimeoutException("could not connect to " + socket + " within " + timeout.toMillis()
                        + " ms" + (last == null ? " (socket never appeared)" : ": " + last));
            }
            try {
                Thread.sleep(pauseMillis);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while connecting to " + socket, e);
            }
            pauseMillis = Math.min(50, pauseMillis * 2);
        }
    }
}
