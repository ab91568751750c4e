package dev.multifdcolo.memory;

import java.lang.foreign.MemorySegment;

/**
 * The COLO flush (§9.8): for a range of bitmap words, every run of consecutive dirty pages is
 * copied cache → guest in one bulk copy, and the bits are cleared. Runs continue across word
 * boundaries, so a 1 MiB dirty stretch is one copy, not 256.
 */
public final class ColoFlush {
    private ColoFlush() {}

    /** Result of flushing one range: pages copied and bulk copies issued. */
    public record Stats(long pages, long runs) {}

    /**
     * Flushes words {@code [fromWord, toWord)} of {@code block}'s bitmap.
     */
    public static Stats flush(RamBlock block, int fromWord, int toWord) {
        DirtyBitmap bm = block.bitmap();
        return copyRuns(block, fromWord, toWord, bm::take);
    }

    /**
     * Copies cache → guest the pages set in {@code words} (a bitmap snapshot, e.g. a redo record
     * of {@link CheckpointJournal}), leaving the block's own bitmap alone.
     */
    public static Stats copy(RamBlock block, long[] words) {
        return copyRuns(block, 0, words.length, w -> words[w]);
    }

    private static Stats copyRuns(RamBlock block, int fromWord, int toWord, java.util.function.IntToLongFunction word) {
        MemorySegment cache = block.cache();
        MemorySegment guest = block.guest();
        long pages = 0;
        long runs = 0;
        long runStart = -1;
        long runLen = 0;
        for (int w = fromWord; w < toWord; w++) {
            long bits = word.applyAsLong(w);
            long base = (long) w << 6;
            while (bits != 0) {
                int first = Long.numberOfTrailingZeros(bits);
                // consecutive ones from `first` (the shift brings in zeros, so this stops at bit 63)
                int ones = Long.numberOfTrailingZeros(~(bits >>> first));
                long page = base + first;
                if (runStart >= 0 && page == runStart + runLen) {
                    runLen += ones;                       // continues the run, also across words
                } else {
                    if (runStart >= 0) {
                        copy(cache, guest, runStart, runLen);
                        pages += runLen;
                        runs++;
                    }
                    runStart = page;
                    runLen = ones;
                }
                int end = first + ones;
                bits = end >= 64 ? 0 : bits & (-1L << end);
            }
        }
        if (runStart >= 0) {
            copy(cache, guest, runStart, runLen);
            pages += runLen;
            runs++;
        }
        return new Stats(pages, runs);
    }

    private static void copy(MemorySegment cache, MemorySegment guest, long page, long count) {
        long off = page << Pages.SHIFT;
        MemorySegment.copy(cache, off, guest, off, count << Pages.SHIFT);
    }
}
