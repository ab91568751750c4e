package dev.multifdcolo.wire.compress;

import com.github.luben.zstd.EndDirective;
import com.github.luben.zstd.ZstdCompressCtx;
import dev.multifdcolo.wire.Compression;

import java.nio.ByteBuffer;

/**
 * zstd stream of one channel, as QEMU's multifd-zstd sender writes it: {@code ZSTD_initCStream(level)}
 * (no checksum, content size unknown), each packet compressed with {@code ZSTD_e_flush}, the frame
 * never ended. zstd-jni addresses direct and array-backed buffers in place; read-only heap input
 * goes through a fixed direct scratch buffer.
 */
final class ZstdPageCompressor implements PageCompressor {
    /** QEMU's multifd-zstd-level range. */
    static final int MAX_LEVEL = 20;
    private static final int SCRATCH_LEN = 128 << 10;

    private final ZstdCompressCtx ctx = new ZstdCompressCtx();
    private ByteBuffer scratch;
    private boolean closed;

    ZstdPageCompressor(int level) {
        if (level < 0 || level > MAX_LEVEL) {
            ctx.close();
            throw new IllegalArgumentException("multifd-zstd-level " + level + " out of range 0-" + MAX_LEVEL);
        }
        ctx.setLevel(level);
        ctx.setChecksum(false);
    }

    @Override
    public Compression compression() {
        return Compression.ZSTD;
    }

    @Override
    public int compress(ByteBuffer pages, ByteBuffer out) {
        int n = CompressArgs.check(closed, Compression.ZSTD, pages, out);
        if (n == 0) {
            return 0;
        }
        int bound = PageCompressor.maxCompressedSize(Compression.ZSTD, n);
        int start = out.position();
        if (pages.isDirect() || pages.hasArray()) {
            flushAll(pages, out, bound);
        } else {
            if (scratch == null) {
                scratch = ByteBuffer.allocateDirect(SCRATCH_LEN);
            }
            while (pages.hasRemaining()) {
                int chunk = Math.min(SCRATCH_LEN, pages.remaining());
                scratch.clear().put(0, pages, pages.position(), chunk).limit(chunk);
                pages.position(pages.position() + chunk);
                if (pages.hasRemaining()) {
                    while (scratch.hasRemaining()) {
                        ctx.compressByteBufferStream(out, scratch, EndDirective.CONTINUE);
                        checkRoom(out, bound, n);
                    }
                } else {
                    flushAll(scratch, out, bound);
                }
            }
        }
        return out.position() - start;
    }

    /** Feeds all of {@code src} and flushes everything the stream holds. */
    private void flushAll(ByteBuffer src, ByteBuffer out, int bound) {
        int n = src.remaining();
        while (!ctx.compressByteBufferStream(out, src, EndDirective.FLUSH) || src.hasRemaining()) {
            checkRoom(out, bound, n);
        }
    }

    private static void checkRoom(ByteBuffer out, int bound, int n) {
        if (!out.hasRemaining()) {
            throw new IllegalStateException("zstd output exceeded maxCompressedSize " + bound
                    + " for " + n + " bytes");
        }
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            ctx.close();
        }
    }
}
