package dev.multifdcolo.secondary;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/** Plays captured channel bytes to a replica port over real TCP sockets, like a source would. */
final class Replay implements AutoCloseable {
    private final ExecutorService pool = Executors.newCachedThreadPool();
    private final List<Socket> sockets = new ArrayList<>();
    final java.io.ByteArrayOutputStream replies = new java.io.ByteArrayOutputStream();

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    /**
     * Connects the main channel first (a 7.2 destination needs that; ours does not care), then
     * the channels, and writes every stream in random-sized writes from its own thread.
     *
     * @return completes when every stream was written (sockets stay open until close())
     */
    CompletableFuture<Void> play(int port, byte[] main, List<byte[]> channels, long seed, boolean closeWhenDone) throws IOException {
        List<CompletableFuture<Void>> all = new ArrayList<>();
        List<byte[]> streams = new ArrayList<>();
        streams.add(main);
        streams.addAll(channels);
        for (int i = 0; i < streams.size(); i++) {
            Socket s = new Socket();
            s.setTcpNoDelay(true);
            s.connect(new InetSocketAddress("127.0.0.1", port));
            sockets.add(s);
            byte[] data = streams.get(i);
            Random rnd = new Random(seed + i);
            boolean isMain = i == 0;
            if (isMain) {
                pool.submit(() -> {
                    // not try-with-resources: closing the stream closes the socket, and the
                    // writer may still be finishing (shutdownOutput) when the receiver closes
                    try {
                        InputStream in = s.getInputStream();
                        byte[] buf = new byte[4096];
                        int n;
                        while ((n = in.read(buf)) > 0) {
                            synchronized (replies) {
                                replies.write(buf, 0, n);
                            }
                        }
                    } catch (IOException ignored) {
                        // closed by the receiver
                    }
                });
            }
            all.add(CompletableFuture.runAsync(() -> {
                try {
                    OutputStream out = s.getOutputStream();
                    int pos = 0;
                    while (pos < data.length) {
                        int n = Math.min(data.length - pos, 1 + rnd.nextInt(100_000));
                        out.write(data, pos, n);
                        pos += n;
                    }
                    out.flush();
                    if (closeWhenDone) {
                        s.shutdownOutput();
                    }
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }, pool));
        }
        return CompletableFuture.allOf(all.toArray(CompletableFuture[]::new));
    }

    byte[] replies() {
        synchronized (replies) {
            return replies.toByteArray();
        }
    }

    @Override
    public void close() {
        for (Socket s : sockets) {
            try {
                s.close();
            } catch (IOException ignored) {
                // best effort
            }
        }
        pool.shutdownNow();
    }
}
