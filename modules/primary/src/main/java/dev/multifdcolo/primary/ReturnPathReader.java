package dev.multifdcolo.primary;

import dev.multifdcolo.wire.ReturnPath;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Reads the destination's return-path messages (PROTOCOL.md §8.1: be16 type, be16 length, body)
 * from the main socket on its own thread: PONG values are recorded, SHUT completes
 * {@link #shut()} with its value (0 = OK, 1 = failed). Any other message, a malformed one or an
 * early EOF completes it exceptionally. After SHUT the reader stops (COLO messages follow on
 * the same socket and are not framed).
 */
final class ReturnPathReader implements Runnable {
    private static final int MAX_BODY = 64 * 1024;

    private final ReadableByteChannel in;
    private final CompletableFuture<Integer> shut = new CompletableFuture<>();
    private final List<Integer> pongs = new CopyOnWriteArrayList<>();
    private final Thread thread;

    ReturnPathReader(ReadableByteChannel in) {
        this.in = in;
        this.thread = Thread.ofPlatform().name("return-path").daemon().unstarted(this);
    }

    void start() {
        thread.start();
    }

    CompletableFuture<Integer> shut() {
        return shut;
    }

    List<Integer> pongs() {
        return pongs;
    }

    @Override
    public void run() {
        ByteBuffer hdr = ByteBuffer.allocate(4);
        try {
            while (true) {
                hdr.clear();
                if (!readFully(hdr, true)) {
                    shut.completeExceptionally(new MigrationException(
                            "destination closed the return path without sending SHUT"));
                    return;
                }
                hdr.flip();
                int type = Short.toUnsignedInt(hdr.getShort());
                int len = Short.toUnsignedInt(hdr.getShort());
                if (len > MAX_BODY) {
                    throw new MigrationException("return-path message type " + type + " with length " + len);
                }
                ByteBuffer body = ByteBuffer.allocate(len);
                readFully(body, false);
                body.flip();
                switch (type) {
                    case ReturnPath.PONG -> {
                        expect(type, len, 4);
                        pongs.add(body.getInt());
                    }
                    case ReturnPath.SHUT -> {
                        expect(type, len, 4);
                        shut.complete(body.getInt());
                        return;
                    }
                    default -> throw new MigrationException("unexpected return-path message type " + type
                            + " (length " + len + ")");
                }
            }
        } catch (IOException e) {
            shut.completeExceptionally(e instanceof MigrationException ? e
                    : new MigrationException("return path: " + MigrationSender.describe(e), e));
        } catch (RuntimeException e) {
            shut.completeExceptionally(e);
        }
    }

    private static void expect(int type, int len, int want) throws MigrationException {
        if (len != want) {
            throw new MigrationException("return-path message type " + type + " has length " + len + ", expected " + want);
        }
    }

    /** @return false on EOF before the first byte when {@code eofOk} */
    private boolean readFully(ByteBuffer b, boolean eofOk) throws IOException {
        boolean first = true;
        while (b.hasRemaining()) {
            int n = in.read(b);
            if (n < 0) {
                if (first && eofOk) {
                    return false;
                }
                throw new MigrationException("return path closed inside a message");
            }
            first = false;
        }
        return true;
    }
}
