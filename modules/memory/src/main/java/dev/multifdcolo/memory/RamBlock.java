package dev.multifdcolo.memory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * One migrated RAMBlock on the receiving side: its name, its used length and the guest image
 * (a {@link MemorySegment} of exactly {@code length} bytes). Offsets on the wire are offsets
 * inside the block, never guest-physical addresses (§12 gotcha 17).
 */
public final class RamBlock {
    private final String name;
    private final long length;
    private final MemorySegment guest;
    private final int index;
    private volatile MemorySegment cache;
    private volatile DirtyBitmap bitmap;

    RamBlock(int index, String name, long length, MemorySegment guest) {
        this.index = index;
        this.name = name;
        this.length = length;
        this.guest = guest;
    }

    public String name() {
        return name;
    }

    public long length() {
        return length;
    }

    /** Position in the MEM_SIZE list. */
    public int index() {
        return index;
    }

    public long pages() {
        return length / Pages.SIZE;
    }

    /** The guest image: what a QEMU destination would hold in this block's RAM. */
    public MemorySegment guest() {
        return guest;
    }

    /** The COLO cache (the primary's memory as last received), or null when COLO is off (§9.5). */
    public MemorySegment cache() {
        return cache;
    }

    /** The COLO dirty bitmap, or null when COLO is off. */
    public DirtyBitmap bitmap() {
        return bitmap;
    }

    void enableColo(MemorySegment cacheSegment) {
        this.bitmap = new DirtyBitmap(pages());
        this.cache = cacheSegment;
    }

    /** Zeroes one page of the guest image. */
    public void zeroPage(long offset) {
        guest.asSlice(offset, Pages.SIZE).fill((byte) 0);
    }

    /** True when the page at {@code offset} is all zero (8 bytes at a time). */
    public static boolean isZero(MemorySegment image, long offset) {
        for (long i = 0; i < Pages.SIZE; i += 8) {
            if (image.get(ValueLayout.JAVA_LONG_UNALIGNED, offset + i) != 0) {
                return false;
            }
        }
        return true;
    }

    @Override
    public String toString() {
        return name + " (" + length + " bytes)";
    }
}
