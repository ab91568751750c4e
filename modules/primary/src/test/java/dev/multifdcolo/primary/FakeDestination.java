package dev.multifdcolo.primary;

import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.ReturnPath;

import java.io.ByteArrayOutputStream;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A recording destination on 127.0.0.1 for tests: accepts the main channel and {@code channels}
 * multifd channels (classified by accept order, as QEMU 7.2 does, and checked by magic), keeps
 * every byte, decodes the main stream as it arrives and, when the stream opened a return path,
 * answers PING with PONG and sends SHUT({@code shutValue}) after the vmdesc.
 */
final class FakeDestination implements AutoCloseable {
    private final ServerSocket server;
    private final Framing framing;
    private final int channels;
    private final int shutValue;
    private final List<Socket> sockets = new ArrayList<>();
    private final CompletableFuture<Result> result = new CompletableFuture<>();

    record Result(byte[] main, List<byte[]> multifd, StreamDecoder.MainStream decoded) {}

    FakeDestination(Framing framing, int channels, int shutValue) throws IOException {
        this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        this.framing = framing;
        this.channels = channels;
        this.shutValue = shutValue;
        Thread.ofPlatform().name("fake-dest").daemon().start(this::run);
    }

    int port() {
        return server.getLocalPort();
    }

    Result await(Duration timeout) throws Exception {
        return result.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    private void run() {
        try {
            Socket main = server.accept();
            sockets.add(main);
            ByteArrayOutputStream mainBytes = new ByteArrayOutputStream();
            CompletableFuture<StreamDecoder.MainStream> decoded = new CompletableFuture<>();
            Thread.ofPlatform().daemon().start(() -> {
                try {
                    InputStream in = new Tee(new java.io.BufferedInputStream(main.getInputStream(), 1 << 16), mainBytes);
                    OutputStream out = main.getOutputStream();
                    StreamDecoder.MainStream m = StreamDecoder.decodeMain(in, framing, v -> send(out, ReturnPath.PONG, v));
                    if (m.returnPath && shutValue >= 0) {
                        send(out, ReturnPath.SHUT, shutValue);
                    }
                    byte[] rest = new byte[8192];
                    while (in.read(rest, 0, rest.length) >= 0) {
                        // keep recording until the source closes
                    }
                    decoded.complete(m);
                } catch (Throwable t) {
                    decoded.completeExceptionally(t);
                }
            });
            List<CompletableFuture<byte[]>> chans = new ArrayList<>();
            for (int i = 0; i < channels; i++) {
                Socket s = server.accept();
                sockets.add(s);
                CompletableFuture<byte[]> f = new CompletableFuture<>();
                chans.add(f);
                Thread.ofPlatform().daemon().start(() -> {
                    try {
                        f.complete(s.getInputStream().readAllBytes());
                    } catch (Throwable t) {
                        f.completeExceptionally(t);
                    }
                });
            }
            StreamDecoder.MainStream m = decoded.get();
            List<byte[]> mf = new ArrayList<>();
            for (CompletableFuture<byte[]> f : chans) {
                mf.add(f.get());
            }
            result.complete(new Result(mainBytes.toByteArray(), mf, m));
        } catch (Throwable t) {
            result.completeExceptionally(t);
        }
    }

    private static void send(OutputStream out, int type, int value) {
        try {
            ByteBuffer b = ByteBuffer.allocate(8).putShort((short) type).putShort((short) 4).putInt(value);
            synchronized (out) {
                out.write(b.array());
                out.flush();
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Override
    public void close() throws IOException {
        server.close();
        for (Socket s : sockets) {
            s.close();
        }
    }

    /** Copies every byte read into a buffer. */
    private static final class Tee extends FilterInputStream {
        private final ByteArrayOutputStream copy;

        Tee(InputStream in, ByteArrayOutputStream copy) {
            super(in);
            this.copy = copy;
        }

        @Override
        public int read() throws IOException {
            int b = super.read();
            if (b >= 0) {
                copy.write(b);
            }
            return b;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            int n = super.read(b, off, len);
            if (n > 0) {
                copy.write(b, off, n);
            }
            return n;
        }
    }
}
