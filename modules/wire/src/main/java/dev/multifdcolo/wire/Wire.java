package dev.multifdcolo.wire;

/** Sizes fixed by the target (x86, 4 KiB pages) and by QEMU's multifd implementation (§3.1). */
public final class Wire {
    private Wire() {}

    /** Target page size; x86 = 4096 (§12 gotcha 18). */
    public static final int PAGE_SIZE = 4096;
    public static final int PAGE_SHIFT = 12;
    /** MULTIFD_PACKET_SIZE: payload capacity of one multifd packet. */
    public static final int MULTIFD_PACKET_SIZE = 512 * 1024;
    /** page_count: offset-array capacity and the largest legal pages_alloc. */
    public static final int PAGES_PER_PACKET = MULTIFD_PACKET_SIZE / PAGE_SIZE;
    /** Bytes of a RAM packet header on the wire: 320 + 8 x page_count = 1344 on x86. */
    public static final int PACKET_HEADER_LEN = 320 + 8 * PAGES_PER_PACKET;
    /** The 64-byte multifd hello (§2.1). */
    public static final int HELLO_LEN = 64;
    public static final int MULTIFD_MAGIC = 0x11223344;
    public static final int MULTIFD_VERSION = 1;
    /** "QEVM" */
    public static final int QEVM_MAGIC = 0x5145564D;
    public static final int STREAM_VERSION = 3;
    public static final int STREAM_VERSION_V2 = 2;
    /** The "ram" section handler's version (§7.5). */
    public static final int RAM_SECTION_VERSION = 4;
    public static final String RAM_IDSTR = "ram";
    /** Longest RAMBlock idstr: 256-byte field with a NUL (§3.2). */
    public static final int RAMBLOCK_NAME_MAX = 255;
}
