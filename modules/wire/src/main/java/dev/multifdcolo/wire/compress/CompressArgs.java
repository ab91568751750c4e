package dev.multifdcolo.wire.compress;

import dev.multifdcolo.wire.Compression;

import java.nio.ByteBuffer;
import java.nio.ReadOnlyBufferException;

/** The argument checks every {@link PageCompressor#compress} does before touching its stream. */
final class CompressArgs {
    private CompressArgs() {}

    /**
     * @return the number of page bytes to compress (0: nothing to do, the stream is untouched)
     * @throws IllegalArgumentException when {@code out} cannot hold the worst case
     */
    static int check(boolean closed, Compression c, ByteBuffer pages, ByteBuffer out) {
        if (closed) {
            throw new IllegalStateException("compressor closed");
        }
        if (out.isReadOnly()) {
            throw new ReadOnlyBufferException();
        }
        int n = pages.remaining();
        if (n == 0) {
            return 0;
        }
        int bound = PageCompressor.maxCompressedSize(c, n);
        if (out.remaining() < bound) {
            throw new IllegalArgumentException("output has " + out.remaining() + " bytes, "
                    + bound + " needed for " + n + " bytes of pages");
        }
        return n;
    }
}
