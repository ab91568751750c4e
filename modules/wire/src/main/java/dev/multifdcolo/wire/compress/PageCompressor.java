package dev.multifdcolo.wire.compress;

import dev.multifdcolo.wire.Compression;

import java.nio.ByteBuffer;

/**
 * Send side of one multifd channel's compression stream, producing exactly what QEMU's multifd
 * zlib / zstd senders put on the wire (PROTOCOL.md §6): one stream per channel, never reset or
 * finished, each packet's data ending with a flush (zlib {@code Z_SYNC_FLUSH}, so every packet
 * ends {@code 00 00 ff ff} and only the first starts with the zlib header; zstd
 * {@code ZSTD_e_flush}, one frame that is never ended, no checksum, no content size).
 *
 * <p>One instance = one channel; packets must go out in the order they were compressed. Not
 * thread safe. No allocation per call on the hot path.
 */
public sealed interface PageCompressor extends AutoCloseable permits ZlibPageCompressor, ZstdPageCompressor {

    /** QEMU's default {@code multifd-zlib-level} and {@code multifd-zstd-level}. */
    int DEFAULT_LEVEL = 1;

    /**
     * @param level zlib 0-9 (0 = stored), zstd 0-20 as QEMU accepts (0 = zstd's default, 3)
     * @throws IllegalArgumentException for {@link Compression#NONE} or a level out of range
     */
    static PageCompressor create(Compression c, int level) {
        return switch (c) {
            case ZLIB -> new ZlibPageCompressor(level);
            case ZSTD -> new ZstdPageCompressor(level);
            case NONE -> throw new IllegalArgumentException("multifd-compression none has no compressor");
        };
    }

    /**
     * Upper bound of what {@link #compress} writes for {@code inputBytes} of input, including the
     * first packet's stream header and the flush at the end. For {@link Compression#NONE} it is
     * {@code inputBytes}.
     */
    static int maxCompressedSize(Compression c, int inputBytes) {
        if (inputBytes < 0) {
            throw new IllegalArgumentException("negative input size " + inputBytes);
        }
        long n = inputBytes;
        long bound = switch (c) {
            case NONE -> n;
            // stock zlib never emits more than stored blocks (5 bytes of header per block of
            // at most 64 KiB, at least 16 KiB with memLevel 8: deflateBound's n>>12 + n>>14);
            // we allow n>>10, plus the 2-byte header, the block cut short by the flush and the
            // 5-byte empty stored block of the sync flush, with room to spare
            case ZLIB -> n + (n >> 10) + 64;
            // ZSTD_compressBound (n + n/256 + margin below 128 KiB), plus the frame header (at
            // most 18 bytes) and raw-block headers of a flush, with room to spare
            case ZSTD -> n + (n >> 8) + (n < (128 << 10) ? ((128 << 10) - n) >> 11 : 0) + 64;
        };
        if (bound > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("input of " + inputBytes + " bytes too large for one packet");
        }
        return (int) bound;
    }

    /** The method this instance produces. */
    Compression compression();

    /**
     * Compresses all remaining bytes of {@code pages} (the packet's normal pages, contiguous, in
     * offset-array order) as one packet of this channel's stream and writes them at
     * {@code out}'s position.
     *
     * <p>An empty {@code pages} writes nothing, returns 0 and leaves the stream untouched (a
     * packet without normal pages carries no compressed data).
     *
     * @param pages heap, direct or read-only; consumed completely (position = limit)
     * @param out   writable, heap or direct, with at least
     *              {@link #maxCompressedSize(Compression, int) maxCompressedSize(compression(),
     *              pages.remaining())} bytes remaining (checked before anything is touched)
     * @return bytes written to {@code out} (its position advanced by that): next_packet_size
     * @throws IllegalArgumentException if {@code out} is too small
     * @throws java.nio.ReadOnlyBufferException if {@code out} is read-only
     * @throws IllegalStateException after {@link #close()}
     */
    int compress(ByteBuffer pages, ByteBuffer out);

    /** Frees the native stream state. Idempotent. */
    @Override
    void close();
}
