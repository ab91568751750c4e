package dev.multifdcolo.wire.compress;

import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;

import java.nio.ByteBuffer;

/**
 * Receive side of one multifd channel's compression stream (PROTOCOL.md §6).
 *
 * <p>QEMU keeps a single zlib / zstd stream per channel for the channel's whole life: the first
 * packet carries the zlib header or zstd frame header, every later packet continues the same
 * stream, and every packet ends with a flush. So one instance serves exactly one channel, packets
 * must be fed in wire order, and the instance is never reset. Not thread safe (one channel = one
 * thread).
 *
 * <p>Bounds (decompression bombs): the decoder never writes past {@code output.limit()}, and it
 * allocates nothing whose size depends on what the peer sends. zlib holds a fixed 32 KiB window;
 * zstd's window is capped at 2^{@value #ZSTD_WINDOW_LOG_MAX} bytes, enough for every level QEMU
 * accepts (0-20); a frame asking for more is rejected as corrupt.
 *
 * <p>After a {@link ProtocolException} the stream state is undefined: the channel must be torn
 * down (QEMU fails the migration too) and the instance only closed; further calls throw
 * {@link IllegalStateException}.
 */
public sealed interface PageDecompressor extends AutoCloseable
        permits ZlibPageDecompressor, ZstdPageDecompressor {

    /**
     * Largest {@code next_packet_size} any QEMU receiver accepts for a compressed packet: its
     * receive buffer is twice {@code MULTIFD_PACKET_SIZE} (1 MiB). Compressed packets from a
     * well-behaved sender are never near it (QEMU sizes its send buffer with compressBound).
     */
    int MAX_PAYLOAD_SIZE = 2 * Wire.MULTIFD_PACKET_SIZE;

    /** zstd window cap (log2): level 20 with unknown content size uses 2^25. */
    int ZSTD_WINDOW_LOG_MAX = 25;

    /** One decompressor for one channel. {@link Compression#NONE} has no stream: IllegalArgumentException. */
    static PageDecompressor create(Compression c) {
        return switch (c) {
            case ZLIB -> new ZlibPageDecompressor();
            case ZSTD -> new ZstdPageDecompressor();
            case NONE -> throw new IllegalArgumentException("multifd-compression none has no decompressor");
        };
    }

    /**
     * Checks a packet's {@code next_packet_size} before its payload is read from the socket, so a
     * reader never buffers more than {@link #MAX_PAYLOAD_SIZE} for one packet. Only for packets with
     * {@code normal_pages > 0} (page-less packets carry no payload whatever the field says, §3.3).
     *
     * @return the payload length as a non-negative int
     * @throws ProtocolException {@link Rule#PACKET_PAYLOAD_SIZE} if it is 0 or above the bound
     */
    static int checkedPayloadSize(int nextPacketSize, int normalPages) {
        ProtocolException.check(nextPacketSize != 0, Rule.PACKET_PAYLOAD_SIZE,
                "packet with %d normal pages has an empty compressed payload", normalPages);
        ProtocolException.check(Integer.compareUnsigned(nextPacketSize, MAX_PAYLOAD_SIZE) <= 0,
                Rule.PACKET_PAYLOAD_SIZE, "compressed payload of %s bytes, at most %d accepted",
                Integer.toUnsignedString(nextPacketSize), MAX_PAYLOAD_SIZE);
        return nextPacketSize;
    }

    /** The method this instance decodes. */
    Compression compression();

    /**
     * Decodes one packet.
     *
     * @param input  exactly one packet's compressed bytes ({@code position..limit} =
     *               next_packet_size); heap, direct or read-only. On success its position is at
     *               its limit.
     * @param output writable buffer whose {@code remaining()} is exactly normal_pages x page size
     *               (must be at least 1 byte); heap or direct. On success it is filled completely
     *               (position = limit). Nothing is ever written at or past its limit; on failure
     *               {@code [position, limit)} may hold partial data.
     * @throws ProtocolException {@link Rule#DECOMPRESS_SIZE} if the payload decodes to fewer bytes
     *         than {@code output.remaining()}, or would decode to more (including output the
     *         decoder still holds back); {@link Rule#DECOMPRESS_CORRUPT} for data the decoder
     *         rejects, for payload bytes left over that produce nothing, and for a stream that
     *         ends (QEMU never ends it); {@link Rule#PACKET_PAYLOAD_SIZE} if the input is longer
     *         than {@link #MAX_PAYLOAD_SIZE}
     * @throws IllegalArgumentException if {@code output} has no room
     * @throws java.nio.ReadOnlyBufferException if {@code output} is read-only
     * @throws IllegalStateException after an earlier failure or {@link #close()}
     */
    void decompress(ByteBuffer input, ByteBuffer output);

    /** Frees the native stream state. Idempotent. */
    @Override
    void close();
}
