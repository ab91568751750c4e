package dev.multifdcolo.primary;

import dev.multifdcolo.wire.Compression;

import java.nio.ByteBuffer;

/**
 * One multifd channel's compression stream (PROTOCOL.md §6): continuous for the channel's life,
 * each packet ending with a sync flush. A thin seam over {@code dev.multifdcolo.wire.compress}.
 */
interface PacketCompressor extends AutoCloseable {

    /**
     * Compresses all remaining bytes of {@code pages} (n whole pages, one packet) into {@code out}
     * starting at its position.
     *
     * @return the number of compressed bytes; {@code out}'s position is left after them
     */
    int compress(ByteBuffer pages, ByteBuffer out);

    @Override
    void close();

    /** Upper bound of {@link #compress}'s output for {@code inputBytes} of input. */
    static int maxCompressedSize(Compression c, int inputBytes) {
        return CompressorBridge.maxCompressedSize(c, inputBytes);
    }

    /** A fresh per-channel stream; throws {@link UnsupportedOperationException} when unavailable. */
    static PacketCompressor create(Compression c, int level) {
        return CompressorBridge.create(c, level);
    }

    static boolean available(Compression c) {
        return c == Compression.NONE || CompressorBridge.available();
    }
}
