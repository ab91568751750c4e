package dev.multifdcolo.wire.compress;

import com.github.luben.zstd.ZstdDecompressCtx;
import com.github.luben.zstd.ZstdException;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;

import java.nio.ByteBuffer;

/**
 * zstd stream of one channel (§6.2): one {@link ZstdDecompressCtx} driven with
 * {@code ZSTD_decompressStream}, fed packet by packet and never reset; the frame it decodes is
 * never ended by QEMU.
 *
 * <p>zstd-jni addresses direct and array-backed buffers in place. A read-only heap input has no
 * accessible array; it is copied through a fixed direct scratch buffer in chunks.
 *
 * <p>zstd decodes a block into its own window buffer and copies out what fits, so with a full
 * output buffer it may hold back data. After the output is full we therefore always call the
 * decoder once more with a small probe buffer (and whatever input is left): any byte produced
 * means the packet decodes to more than declared. The probe call is the only call per packet
 * that can make no progress, so zstd's "no forward progress" guard (16 such calls in a row) is
 * never reached.
 */
final class ZstdPageDecompressor implements PageDecompressor {
    private static final int PROBE_LEN = 64;
    private static final int SCRATCH_LEN = 64 << 10;

    private final ZstdDecompressCtx ctx = new ZstdDecompressCtx();
    private final ByteBuffer probe = ByteBuffer.allocateDirect(PROBE_LEN);
    /** For inputs zstd-jni cannot address (read-only heap buffers); allocated on first need. */
    private ByteBuffer scratch;
    private boolean failed;
    private boolean closed;

    /** Packets whose input was not fully consumed when the output became full (tests, diagnostics). */
    long leftoverInputPackets;

    ZstdPageDecompressor() {
        ctx.setLongMax(ZSTD_WINDOW_LOG_MAX);
    }

    @Override
    public Compression compression() {
        return Compression.ZSTD;
    }

    @Override
    public void decompress(ByteBuffer input, ByteBuffer output) {
        int expected = ZlibPageDecompressor.Checks.begin(closed, failed, input, output);
        failed = true; // cleared on success
        boolean direct = input.isDirect() || input.hasArray();
        ByteBuffer src = direct ? input : refill(input, emptyScratch());
        while (output.hasRemaining() && src.hasRemaining()) {
            int sp = src.position();
            int op = output.position();
            stream(output, src, expected);
            if (src.position() == sp && output.position() == op) {
                throw new ProtocolException(Rule.DECOMPRESS_CORRUPT, String.format(
                        "zstd decoder stalled after %d of %d bytes", expected - output.remaining(), expected));
            }
            if (!direct && !src.hasRemaining()) {
                refill(input, src);
            }
        }
        if (output.hasRemaining()) {
            throw new ProtocolException(Rule.DECOMPRESS_SIZE, String.format(
                    "zstd payload decodes to %d bytes, expected %d", expected - output.remaining(), expected));
        }
        int left = src.remaining() + (direct ? 0 : input.remaining());
        if (left > 0) {
            leftoverInputPackets++;
        }
        while (true) {
            probe.clear();
            int sp = src.position();
            stream(probe, src, expected);
            if (probe.position() > 0) {
                throw new ProtocolException(Rule.DECOMPRESS_SIZE, String.format(
                        "zstd payload decodes to more than the %d bytes of the packet's pages", expected));
            }
            if (!direct && !src.hasRemaining()) {
                refill(input, src);
            }
            if (!src.hasRemaining()) {
                break;
            }
            if (src.position() == sp) {
                throw new ProtocolException(Rule.DECOMPRESS_CORRUPT, String.format(
                        "%d of %d zstd payload bytes left over after the packet's %d bytes",
                        src.remaining() + (direct ? 0 : input.remaining()), left, expected));
            }
        }
        failed = false;
    }

    private void stream(ByteBuffer dst, ByteBuffer src, int expected) {
        try {
            ctx.decompressByteBufferStream(dst, src);
        } catch (ZstdException e) {
            throw new ProtocolException(Rule.DECOMPRESS_CORRUPT, String.format(
                    "zstd: %s (packet of %d bytes)", e.getMessage(), expected));
        }
    }

    private ByteBuffer emptyScratch() {
        if (scratch == null) {
            scratch = ByteBuffer.allocateDirect(SCRATCH_LEN);
        }
        return scratch.clear().limit(0);
    }

    /** Copies the next chunk of {@code input} into the (consumed) scratch buffer. */
    private static ByteBuffer refill(ByteBuffer input, ByteBuffer scratch) {
        scratch.clear();
        int n = Math.min(scratch.capacity(), input.remaining());
        scratch.put(scratch.position(), input, input.position(), n);
        input.position(input.position() + n);
        return scratch.limit(n);
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            ctx.close();
        }
    }
}
