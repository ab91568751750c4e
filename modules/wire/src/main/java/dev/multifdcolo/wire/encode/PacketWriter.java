package dev.multifdcolo.wire.encode;

import dev.multifdcolo.wire.MultifdHello;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.Wire;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * Builds multifd RAM packet headers (PROTOCOL.md §3.2) in one reusable direct buffer, one per
 * channel. Every header is complete and clean (no stale fields, as newest QEMU does): fields that
 * a previous packet set but this one does not use are zeroed again. Nothing is allocated per
 * packet.
 *
 * <p>The returned buffer is the writer's own, positioned at 0 with limit
 * {@link Wire#PACKET_HEADER_LEN}; it is valid until the next call.
 */
public final class PacketWriter {
    private final ByteBuffer header = ByteBuffer.allocateDirect(Wire.PACKET_HEADER_LEN).order(ByteOrder.BIG_ENDIAN);
    /** Offset entries (normal + zero) written by the previous packet; zeroed before reuse. */
    private int usedEntries;
    /** Length of the block name written by the previous packet. */
    private int usedName;

    /** The bytes of a RAMBlock name as a packet carries it (≤ 255 bytes, NUL added by the field). */
    public static byte[] blockName(String name) {
        byte[] b = name.getBytes(StandardCharsets.ISO_8859_1);
        if (b.length > Wire.RAMBLOCK_NAME_MAX) {
            throw new IllegalArgumentException("RAMBlock name longer than 255 bytes");
        }
        return b;
    }

    /**
     * A SYNC packet: flags {@code SYNC}, no pages, no block. QEMU 7.2 puts its page count (128) in
     * pages_alloc, 11.1 puts 0; either is accepted by both.
     */
    public ByteBuffer sync(long packetNum, int pagesAlloc) {
        return fill(MultifdPacket.FLAG_SYNC, pagesAlloc, 0, 0, 0, packetNum, null, null, 0);
    }

    /**
     * A RAM packet.
     *
     * @param flags           compression bits (and SYNC if a 7.2-style combined packet is wanted)
     * @param blockName       bytes from {@link #blockName(String)}
     * @param offsets         page offsets in the block: {@code normal} normal pages first, then
     *                        {@code zero} zero pages, starting at {@code offsetsFrom}
     * @param nextPacketSize  payload bytes following the header (normal × PAGE for none,
     *                        the compressed length otherwise)
     */
    public ByteBuffer data(int flags, int normal, int zero, int nextPacketSize, long packetNum,
                           byte[] blockName, long[] offsets, int offsetsFrom) {
        if (normal < 0 || zero < 0 || normal + zero > Wire.PAGES_PER_PACKET) {
            throw new IllegalArgumentException("a packet holds at most " + Wire.PAGES_PER_PACKET + " pages");
        }
        return fill(flags, Wire.PAGES_PER_PACKET, normal, zero, nextPacketSize, packetNum, blockName, offsets,
                offsetsFrom);
    }

    private ByteBuffer fill(int flags, int pagesAlloc, int normal, int zero, int nextPacketSize, long packetNum,
                            byte[] name, long[] offsets, int from) {
        ByteBuffer h = header;
        h.clear();
        h.putInt(MultifdPacket.OFF_MAGIC, Wire.MULTIFD_MAGIC)
                .putInt(MultifdPacket.OFF_VERSION, Wire.MULTIFD_VERSION)
                .putInt(MultifdPacket.OFF_FLAGS, flags)
                .putInt(MultifdPacket.OFF_PAGES_ALLOC, pagesAlloc)
                .putInt(MultifdPacket.OFF_NORMAL_PAGES, normal)
                .putInt(MultifdPacket.OFF_NEXT_PACKET_SIZE, nextPacketSize)
                .putLong(MultifdPacket.OFF_PACKET_NUM, packetNum)
                .putInt(MultifdPacket.OFF_ZERO_PAGES, zero);
        // bytes 36..63 are never written, so they stay zero
        int nameLen = name == null ? 0 : name.length;
        if (nameLen > 0) {
            h.put(MultifdPacket.OFF_RAMBLOCK, name);
        }
        for (int i = nameLen; i < usedName; i++) {
            h.put(MultifdPacket.OFF_RAMBLOCK + i, (byte) 0);
        }
        usedName = nameLen;
        int n = normal + zero;
        for (int i = 0; i < n; i++) {
            h.putLong(MultifdPacket.OFF_OFFSETS + 8 * i, offsets[from + i]);
        }
        for (int i = n; i < usedEntries; i++) {
            h.putLong(MultifdPacket.OFF_OFFSETS + 8 * i, 0L);
        }
        usedEntries = n;
        h.position(0).limit(Wire.PACKET_HEADER_LEN);
        return h;
    }

    /** A 64-byte multifd hello (§2.1) in a new heap buffer, ready to write. */
    public static ByteBuffer hello(byte[] uuid, int channelId) {
        ByteBuffer b = ByteBuffer.allocate(Wire.HELLO_LEN);
        MultifdHello.encode(b, uuid, channelId);
        return b.flip();
    }
}
