package dev.multifdcolo.wire;

/**
 * Flags in the low bits of a RAM record's be64 header word (§7.5). {@code offset = word & ~(PAGE-1)},
 * {@code flags = word & (PAGE-1)}; the dispatch value is {@code flags & ~CONTINUE}.
 */
public final class RamFlags {
    private RamFlags() {}

    public static final int FULL = 0x01;           // obsolete, rejected
    public static final int ZERO = 0x02;
    public static final int MEM_SIZE = 0x04;
    public static final int PAGE = 0x08;
    public static final int EOS = 0x10;
    public static final int CONTINUE = 0x20;
    public static final int XBZRLE = 0x40;          // rejected (multifd excludes xbzrle)
    public static final int HOOK = 0x80;            // RDMA, rejected
    public static final int COMPRESS_PAGE = 0x100;  // removed "compress" capability, rejected
    public static final int MULTIFD_FLUSH = 0x200;

    public static final long FLAG_MASK = Wire.PAGE_SIZE - 1;

    public static int flags(long word) {
        return (int) (word & FLAG_MASK);
    }

    public static long offset(long word) {
        return word & ~FLAG_MASK;
    }
}
