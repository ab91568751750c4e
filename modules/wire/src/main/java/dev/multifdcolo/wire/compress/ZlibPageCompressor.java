package dev.multifdcolo.wire.compress;

import dev.multifdcolo.wire.Compression;

import java.nio.ByteBuffer;
import java.util.zip.Deflater;

/**
 * zlib stream of one channel, as QEMU's multifd-zlib sender writes it: {@code deflateInit(level)}
 * (zlib wrapper, 32 KiB window, memLevel 8, default strategy, which is exactly
 * {@code new Deflater(level, false)}), every packet ending in {@code Z_SYNC_FLUSH}, never
 * finished.
 */
final class ZlibPageCompressor implements PageCompressor {
    private final Deflater deflater;
    /** Detaches the deflater from the caller's buffer between packets. */
    private final ByteBuffer noInput = ByteBuffer.allocate(0);
    private boolean closed;

    ZlibPageCompressor(int level) {
        if (level < 0 || level > 9) {
            throw new IllegalArgumentException("multifd-zlib-level " + level + " out of range 0-9");
        }
        deflater = new Deflater(level, false);
    }

    @Override
    public Compression compression() {
        return Compression.ZLIB;
    }

    @Override
    public int compress(ByteBuffer pages, ByteBuffer out) {
        int n = CompressArgs.check(closed, Compression.ZLIB, pages, out);
        if (n == 0) {
            return 0;
        }
        int bound = PageCompressor.maxCompressedSize(Compression.ZLIB, n);
        int start = out.position();
        deflater.setInput(pages);
        try {
            // With room left after the call, SYNC_FLUSH has consumed all input and flushed;
            // a full output would mean the bound was wrong and the call must be repeated.
            do {
                deflater.deflate(out, Deflater.SYNC_FLUSH);
            } while (!out.hasRemaining() && pages.hasRemaining());
        } finally {
            deflater.setInput(noInput);
        }
        if (pages.hasRemaining() || !out.hasRemaining()) {
            throw new IllegalStateException("zlib output exceeded maxCompressedSize " + bound
                    + " for " + n + " bytes");
        }
        return out.position() - start;
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            deflater.end();
        }
    }
}
