package dev.multifdcolo.wire;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * Flyweight over one multifd RAM packet header (§3.2), {@link Wire#PACKET_HEADER_LEN} bytes.
 * Reads are absolute and big-endian; nothing is copied out of the buffer.
 *
 * <pre>
 *   0 magic      4 version    8 flags     12 pages_alloc  16 normal_pages  20 next_packet_size
 *  24 packet_num (u64)       32 zero_pages (newest; 0 in 7.2)  36..63 reserved
 *  64 ramblock idstr, 256 bytes, NUL terminated
 * 320 offset[page_count], u64 each: normal entries first, then zero entries (newest)
 * </pre>
 *
 * 7.2 does not clear the header between packets, so fields past the counted entries (and
 * next_packet_size / ramblock of page-less packets) may be stale: never read them (§12.2).
 */
public final class MultifdPacket {
    public static final int OFF_MAGIC = 0;
    public static final int OFF_VERSION = 4;
    public static final int OFF_FLAGS = 8;
    public static final int OFF_PAGES_ALLOC = 12;
    public static final int OFF_NORMAL_PAGES = 16;
    public static final int OFF_NEXT_PACKET_SIZE = 20;
    public static final int OFF_PACKET_NUM = 24;
    public static final int OFF_ZERO_PAGES = 32;
    public static final int OFF_RAMBLOCK = 64;
    public static final int RAMBLOCK_LEN = 256;
    public static final int OFF_OFFSETS = 320;
    /** Bytes read before the flags decide between a RAM and a device-state packet (§5). */
    public static final int COMMON_PREFIX_LEN = 12;

    public static final int FLAG_SYNC = 0x01;
    public static final int FLAG_DEVICE_STATE = 0x40;
    /** Compression bits: 7.2 uses 0x0E, newest 0x3E; the wider mask is correct for both since
     *  7.2 never sets bits 4-5. */
    public static final int COMPRESSION_MASK = 0x3E;

    private ByteBuffer buf;
    private int base;

    /** Points the flyweight at a header that starts at {@code buf.position()}. */
    public MultifdPacket wrap(ByteBuffer buf) {
        this.buf = buf.duplicate().order(ByteOrder.BIG_ENDIAN);
        this.base = buf.position();
        return this;
    }

    public int magic() { return buf.getInt(base + OFF_MAGIC); }
    public int version() { return buf.getInt(base + OFF_VERSION); }
    public int flags() { return buf.getInt(base + OFF_FLAGS); }
    public boolean sync() { return (flags() & FLAG_SYNC) != 0; }
    public int compressionBits() { return flags() & COMPRESSION_MASK; }
    public int pagesAlloc() { return buf.getInt(base + OFF_PAGES_ALLOC); }
    public int normalPages() { return buf.getInt(base + OFF_NORMAL_PAGES); }
    public int nextPacketSize() { return buf.getInt(base + OFF_NEXT_PACKET_SIZE); }
    public long packetNum() { return buf.getLong(base + OFF_PACKET_NUM); }
    /** Newest only; 7.2 always has 0 here (unused, zeroed at allocation). */
    public int zeroPages() { return buf.getInt(base + OFF_ZERO_PAGES); }
    public long offset(int i) { return buf.getLong(base + OFF_OFFSETS + 8 * i); }

    /** The RAMBlock name up to the first NUL, with byte 255 forced to NUL as QEMU does. */
    public String ramblock() {
        int len = 0;
        while (len < RAMBLOCK_LEN - 1 && buf.get(base + OFF_RAMBLOCK + len) != 0) {
            len++;
        }
        byte[] name = new byte[len];
        buf.get(base + OFF_RAMBLOCK, name);
        return new String(name, StandardCharsets.ISO_8859_1);
    }

    /** Magic, version and the device-state flag: the part QEMU checks before anything else. */
    public void checkPrefix() {
        ProtocolException.check(magic() == Wire.MULTIFD_MAGIC, Rule.PACKET_MAGIC,
                "received packet magic 0x%08x, expected 0x%08x", magic(), Wire.MULTIFD_MAGIC);
        ProtocolException.check(version() == Wire.MULTIFD_VERSION, Rule.PACKET_VERSION,
                "received packet version %d, expected %d", version(), Wire.MULTIFD_VERSION);
        ProtocolException.check((flags() & FLAG_DEVICE_STATE) == 0, Rule.PACKET_DEVICE_STATE,
                "device-state packet (flags 0x%x): only VFIO sends these and we hold memory only", flags());
    }

    /**
     * Steps 4-6 of §3.7 (page counts). 7.2 leaves the zero_pages word at 0 (reserved, zeroed
     * at allocation and never written), so reading it is right for both versions.
     *
     * @return the number of zero pages this packet lists
     */
    public int checkCounts() {
        int alloc = pagesAlloc();
        int normal = normalPages();
        // unsigned compares: a negative int is a huge u32 on the wire
        ProtocolException.check(Integer.compareUnsigned(alloc, Wire.PAGES_PER_PACKET) <= 0,
                Rule.PACKET_PAGES_ALLOC, "received packet with %s pages, expected at most %d",
                Integer.toUnsignedString(alloc), Wire.PAGES_PER_PACKET);
        ProtocolException.check(Integer.compareUnsigned(normal, alloc) <= 0, Rule.PACKET_NORMAL_PAGES,
                "received packet with %s normal pages, pages_alloc is %d", Integer.toUnsignedString(normal), alloc);
        int zero = zeroPages();
        ProtocolException.check(Integer.compareUnsigned(zero, alloc - normal) <= 0, Rule.PACKET_ZERO_PAGES,
                "received packet with %s zero pages, at most %d remain after %d normal pages",
                Integer.toUnsignedString(zero), alloc - normal, normal);
        return zero;
    }

    /**
     * Step 9 of §3.7 plus alignment: offset {@code i} must be page aligned and the whole page
     * must lie in a block of {@code usedLength} bytes.
     */
    public long checkedOffset(int i, long usedLength, String block) {
        long off = offset(i);
        ProtocolException.check((off & (Wire.PAGE_SIZE - 1)) == 0, Rule.PACKET_OFFSET_ALIGN,
                "page offset 0x%x in block %s is not page aligned", off, block);
        ProtocolException.check(off >= 0 && off <= usedLength - Wire.PAGE_SIZE, Rule.PACKET_OFFSET_RANGE,
                "page offset 0x%x outside block %s of 0x%x bytes", off, block, usedLength);
        return off;
    }

    // ------------------------------------------------------------------ encoding

    /**
     * Writes a complete, zero-filled header (newest style; a legacy sender just leaves
     * zero_pages at 0) at the buffer's position and advances it by {@link Wire#PACKET_HEADER_LEN}.
     */
    public static void encode(ByteBuffer out, int flags, int pagesAlloc, int normalPages, int zeroPages,
                              int nextPacketSize, long packetNum, String ramblock, long[] offsets) {
        if (normalPages + zeroPages > Wire.PAGES_PER_PACKET || offsets.length < normalPages + zeroPages) {
            throw new IllegalArgumentException("too many pages for one packet");
        }
        ByteBuffer b = out.order(ByteOrder.BIG_ENDIAN);
        int p = b.position();
        b.putInt(Wire.MULTIFD_MAGIC).putInt(Wire.MULTIFD_VERSION).putInt(flags).putInt(pagesAlloc)
                .putInt(normalPages).putInt(nextPacketSize).putLong(packetNum).putInt(zeroPages);
        while (b.position() < p + OFF_RAMBLOCK) {
            b.put((byte) 0);
        }
        byte[] name = ramblock.getBytes(StandardCharsets.ISO_8859_1);
        if (name.length > Wire.RAMBLOCK_NAME_MAX) {
            throw new IllegalArgumentException("RAMBlock name longer than 255 bytes");
        }
        b.put(name);
        while (b.position() < p + OFF_OFFSETS) {
            b.put((byte) 0);
        }
        int n = normalPages + zeroPages;
        for (int i = 0; i < Wire.PAGES_PER_PACKET; i++) {
            b.putLong(i < n ? offsets[i] : 0L);
        }
    }
}
