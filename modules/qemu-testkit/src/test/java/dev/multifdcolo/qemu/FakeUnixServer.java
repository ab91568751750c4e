package dev.multifdcolo.qemu;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/** A one-connection unix socket server standing in for QEMU in protocol tests. */
final class FakeUnixServer implements AutoCloseable {

    interface Conversation {
        void run(BufferedReader in, Peer out) throws Exception;
    }

    /** Writes whole lines to the client. */
    static final class Peer {
        private final OutputStream out;

        Peer(OutputStream out) {
            this.out = out;
        }

        void send(String text) throws IOException {
            out.write(text.getBytes(StandardCharsets.UTF_8));
            out.flush();
        }
    }

    private final ServerSocketChannel server;
    private final CompletableFuture<Void> done = new CompletableFuture<>();

    FakeUnixServer(Path socket, Conversation conversation) throws IOException {
        server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        Thread.ofPlatform().daemon().name("fake-" + socket.getFileName()).start(() -> {
            try (SocketChannel client = server.accept()) {
                // one thread only, so the blocking-lock sharing of these streams does not matter
                BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(client),
                        StandardCharsets.UTF_8));
                conversation.run(in, new Peer(Channels.newOutputStream(client)));
                done.complete(null);
            } catch (Throwable t) {
                done.completeExceptionally(t);
            }
        });
    }

    /** Rethrows whatever went wrong on the server side. */
    void awaitDone() throws Exception {
        done.get(10, TimeUnit.SECONDS);
    }

    @Override
    public void close() throws IOException {
        server.close();
    }
}
