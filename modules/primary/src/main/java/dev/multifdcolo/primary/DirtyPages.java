package dev.multifdcolo.primary;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.Pages;
import dev.multifdcolo.memory.RamBlock;

import java.util.BitSet;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * A set of guest pages to send in one RAM section: one bit per page of each {@link RamBlock}.
 * The sender walks blocks in the memory's list order and pages in ascending offset, as QEMU's
 * dirty scan does. Not thread safe.
 */
public final class DirtyPages {
    private final Map<RamBlock, BitSet> bits = new IdentityHashMap<>();

    /** An empty set (e.g. for a completion section after the last iteration sent everything). */
    public static DirtyPages none() {
        return new DirtyPages();
    }

    /** Every page of every block: the first precopy round. */
    public static DirtyPages all(GuestMemory memory) {
        DirtyPages d = new DirtyPages();
        for (RamBlock b : memory.blocks()) {
            d.markRange(b, 0, b.length());
        }
        return d;
    }

    private BitSet bitsOf(RamBlock block) {
        return bits.computeIfAbsent(block, b -> new BitSet((int) Math.min(Integer.MAX_VALUE, b.pages())));
    }

    private static int pageIndex(RamBlock block, long offset) {
        if (offset < 0 || offset >= block.length()) {
            throw new IllegalArgumentException("offset 0x" + Long.toHexString(offset) + " outside " + block);
        }
        return (int) (offset >>> Pages.SHIFT);
    }

    /** Marks the page containing {@code offset}. */
    public DirtyPages mark(RamBlock block, long offset) {
        bitsOf(block).set(pageIndex(block, offset));
        return this;
    }

    /** Marks every page overlapping {@code [offset, offset + length)}. */
    public DirtyPages markRange(RamBlock block, long offset, long length) {
        if (length <= 0) {
            return this;
        }
        int from = pageIndex(block, offset);
        int to = pageIndex(block, offset + length - 1) + 1;
        bitsOf(block).set(from, to);
        return this;
    }

    public boolean isDirty(RamBlock block, long offset) {
        BitSet b = bits.get(block);
        return b != null && b.get(pageIndex(block, offset));
    }

    /** Pages of one block, or null when none is marked. Read-only by convention. */
    public BitSet pagesOf(RamBlock block) {
        BitSet b = bits.get(block);
        return b == null || b.isEmpty() ? null : b;
    }

    public long count() {
        long n = 0;
        for (BitSet b : bits.values()) {
            n += b.cardinality();
        }
        return n;
    }

    public boolean isEmpty() {
        return count() == 0;
    }

    public DirtyPages clear() {
        bits.clear();
        return this;
    }
}
