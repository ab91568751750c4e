package dev.multifdcolo.secondary.stream;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Collects a fixed number of bytes that may arrive split over several reads (a record header,
 * a counted string). The scratch buffer is allocated once, at the largest size the decoder ever
 * asks for, so a wire-supplied length can never make it grow.
 */
final class Gather {
    private final ByteBuffer scratch;

    Gather(int capacity) {
        scratch = ByteBuffer.allocate(capacity).order(ByteOrder.BIG_ENDIAN);
        scratch.limit(0);
    }

    /** Starts collecting {@code n} bytes. */
    void expect(int n) {
        if (n > scratch.capacity()) {
            throw new IllegalStateException("gather of " + n + " bytes exceeds " + scratch.capacity());
        }
        scratch.clear().limit(n);
    }

    /** Copies what it can from {@code in}; true once all expected bytes are there (then {@link #buf()} is readable). */
    boolean fill(ByteBuffer in) {
        int n = Math.min(in.remaining(), scratch.remaining());
        if (n > 0) {
            scratch.put(scratch.position(), in, in.position(), n);
            scratch.position(scratch.position() + n);
            in.position(in.position() + n);
        }
        if (scratch.hasRemaining()) {
            return false;
        }
        scratch.flip();
        return true;
    }

    /** Bytes collected so far of the current item (0 = at an item boundary). */
    int collected() {
        return scratch.position();
    }

    /** The completed item, big-endian, positioned at its start. */
    ByteBuffer buf() {
        return scratch;
    }
}
