package dev.multifdcolo.memory;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.atomic.LongAdder;

/**
 * One bit per page of a RAMBlock, set when a COLO checkpoint changes the page in the cache
 * (§9.6 "record bitmap"). Setting is lock-free (atomic OR on a 64-bit word) so N multifd channels
 * and the main channel can record concurrently without losing a bit; the dirty count grows only
 * when a bit goes from 0 to 1.
 */
public final class DirtyBitmap {
    private static final VarHandle WORDS = MethodHandles.arrayElementVarHandle(long[].class);

    private final long[] words;
    private final long pages;
    private final LongAdder dirty = new LongAdder();

    public DirtyBitmap(long pages) {
        if (pages <= 0 || pages > (long) Integer.MAX_VALUE * 64) {
            throw new IllegalArgumentException("bad page count " + pages);
        }
        this.pages = pages;
        this.words = new long[(int) ((pages + 63) >>> 6)];
    }

    public long pages() {
        return pages;
    }

    public int wordCount() {
        return words.length;
    }

    /** Sets the bit of {@code page}. @return true if it was clear (the page is newly dirty) */
    public boolean set(long page) {
        int w = (int) (page >>> 6);
        long bit = 1L << (page & 63);
        long old = (long) WORDS.getAndBitwiseOr(words, w, bit);
        if ((old & bit) == 0) {
            dirty.increment();
            return true;
        }
        return false;
    }

    public boolean isSet(long page) {
        return ((long) WORDS.getVolatile(words, (int) (page >>> 6)) & (1L << (page & 63))) != 0;
    }

    /** Atomically takes (reads and clears) one word; the dirty count drops by its set bits. */
    public long take(int word) {
        long v = (long) WORDS.getAndSet(words, word, 0L);
        if (v != 0) {
            dirty.add(-Long.bitCount(v));
        }
        return v;
    }

    /**
     * A copy of every word, leaving the bitmap as it is (the redo record of a COLO flush is taken
     * before the flush clears the bits). Only consistent while no one sets bits.
     */
    public long[] snapshot() {
        long[] copy = new long[words.length];
        for (int i = 0; i < words.length; i++) {
            copy[i] = (long) WORDS.getVolatile(words, i);
        }
        return copy;
    }

    /** Pages currently marked dirty. */
    public long dirtyPages() {
        return dirty.sum();
    }

    /** Clears everything (COLO start discards what precopy tracked, §9.8). */
    public void clear() {
        for (int i = 0; i < words.length; i++) {
            take(i);
        }
    }
}
