package dev.multifdcolo.secondary.fuzz;

import dev.multifdcolo.secondary.stream.Progress;

import java.nio.ByteBuffer;
import java.util.SplittableRandom;
import java.util.function.Function;

/**
 * One stream cut into reads, prepared before the measured run: the whole stream at once, tiny
 * reads, or random sizes up to 4 KiB / 64 KiB; each read a heap buffer at a non-zero position or a
 * direct buffer (like Netty's), chosen at random.
 */
final class Reads {
    private final ByteBuffer[] chunks;
    private final int[] base;
    private final int length;
    private int next;
    private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);

    Reads(byte[] data, SplittableRandom r) {
        this(data, r, -1);
    }

    /** @param cut an offset where a read must end (-1: none): a peer that waits for an answer there */
    Reads(byte[] data, SplittableRandom r, int cut) {
        length = data.length;
        int mode = r.nextInt(10);
        int max = switch (mode) {
            case 0, 1 -> Integer.MAX_VALUE;
            case 2 -> data.length > 20_000 ? 512 : 1 + r.nextInt(16);
            case 3, 4, 5, 6 -> 1 + r.nextInt(4096);
            default -> 1 + r.nextInt(65536);
        };
        int count = max == Integer.MAX_VALUE ? 1 : 0;
        int[] sizes = new int[Math.max(2, data.length)];
        if (count == 0) {
            for (int pos = 0; pos < data.length; ) {
                int n = Math.min(data.length - pos, 1 + r.nextInt(max));
                if (pos < cut && pos + n > cut) {
                    n = cut - pos;
                }
                sizes[count++] = n;
                pos += n;
            }
        } else if (cut > 0 && cut < data.length) {
            sizes[0] = cut;
            sizes[1] = data.length - cut;
            count = 2;
        } else {
            sizes[0] = data.length;
        }
        boolean anyDirect = r.nextBoolean();
        ByteBuffer direct = anyDirect ? direct(data) : null;
        chunks = new ByteBuffer[count];
        base = new int[count];
        int pos = 0;
        for (int i = 0; i < count; i++) {
            int n = sizes[i];
            if (anyDirect && r.nextBoolean()) {
                chunks[i] = direct.slice(pos, n);
                base[i] = pos;
            } else {
                chunks[i] = ByteBuffer.wrap(data, pos, n);   // heap, position = pos
                base[i] = 0;
            }
            pos += n;
        }
    }

    /**
     * Direct copies come from one pool that {@link #reset()} rewinds before each input (allocating
     * and zeroing a direct buffer per stream and input was the fuzzer's top cost).
     */
    private static final ByteBuffer POOL = ByteBuffer.allocateDirect(16 << 20);
    private static int top;

    static void reset() {
        top = 0;
    }

    private static ByteBuffer direct(byte[] data) {
        if (top + data.length > POOL.capacity()) {
            return ByteBuffer.allocateDirect(data.length).put(data).clear();
        }
        ByteBuffer b = POOL.slice(top, data.length).put(data).clear();
        top += data.length;
        return b;
    }

    /** Number of reads. */
    int count() {
        return chunks.length;
    }

    boolean done() {
        while (next < chunks.length && !chunks[next].hasRemaining()) {
            next++;
        }
        return next >= chunks.length;
    }

    /** Feeds the current read (or an empty buffer when all is consumed). */
    Progress feed(Function<ByteBuffer, Progress> f) {
        if (done()) {
            return f.apply(EMPTY);
        }
        return f.apply(chunks[next]);
    }

    /** Bytes consumed so far. */
    long consumed() {
        done();
        if (next >= chunks.length) {
            return length;
        }
        return base[next] + chunks[next].position();
    }
}
