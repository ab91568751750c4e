package dev.multifdcolo.primary;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.Pages;
import dev.multifdcolo.memory.RamBlock;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Seeded guest workloads for the COLO primary emulator.
 *
 * <ul>
 *   <li>{@link #idle} — about 1,000 random pages per interval, mostly small records (a few bytes of
 *       an otherwise unchanged page, like the lab guest's 16-byte dirty records), some whole pages,
 *       a few zeroed, a few rewritten with identical bytes, ~10 % written twice;</li>
 *   <li>{@link #load} — bursty: ~4.5 k pages most intervals, ~11 k in busy ones and ~20 k in bursts
 *       (≈ 7 k on average), a mix of streaming writes (sequential runs of whole pages), random
 *       pages and zeroed runs, ~15 % of the pages written again in the same interval;</li>
 *   <li>{@link #random} — for tests: 0..max pages of every kind in random proportions, with
 *       plenty of zero pages, zero→data and data→zero transitions and rewrites.</li>
 * </ul>
 *
 * Page counts are distinct dirty pages, capped at 90 % of the guest's pages.
 */
public final class Workloads {
    private Workloads() {}

    /** The names {@link #parse} accepts. */
    public static final List<String> NAMES = List.of("idle", "load", "random");

    /** "idle", "load" or "random" (random: up to 2,048 pages). */
    public static Workload parse(String name, long seed) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "idle" -> idle(seed);
            case "load" -> load(seed);
            case "random" -> random(seed, 2048);
            default -> throw new IllegalArgumentException("workload must be one of " + NAMES + ", got '" + name + "'");
        };
    }

    public static Workload idle(long seed) {
        return new Base("idle", seed) {
            @Override
            void run(Writer w) {
                int target = w.cap(1000 + rng.nextInt(-150, 151));
                while (w.distinct() < target) {
                    int k = rng.nextInt(100);
                    long p = w.randomPage();
                    if (k < 80) {
                        w.record(p);
                    } else if (k < 92) {
                        w.full(p);
                    } else if (k < 97) {
                        w.zero(p);
                    } else {
                        w.same(p);
                    }
                }
                w.rewrite(target / 10);
            }
        };
    }

    public static Workload load(long seed) {
        return new Base("load", seed) {
            @Override
            void run(Writer w) {
                int u = rng.nextInt(100);
                int target = u < 5 ? 20_000 + rng.nextInt(-2000, 2001)
                        : u < 30 ? 11_000 + rng.nextInt(-2000, 2001)
                        : 4_500 + rng.nextInt(-1000, 1001);
                target = w.cap(target);
                while (w.distinct() < target) {
                    int k = rng.nextInt(100);
                    if (k < 55) {
                        w.stream(w.randomPage(), 16 + rng.nextInt(1009), target);
                    } else if (k < 90) {
                        long p = w.randomPage();
                        if (rng.nextBoolean()) {
                            w.record(p);
                        } else {
                            w.full(p);
                        }
                    } else {
                        w.zeroRun(w.randomPage(), 1 + rng.nextInt(64), target);
                    }
                }
                w.rewrite(target * 15 / 100);
            }
        };
    }

    /** Up to {@code maxPages} distinct pages per interval, every kind of write, ~5 % empty intervals. */
    public static Workload random(long seed, int maxPages) {
        if (maxPages < 0) {
            throw new IllegalArgumentException("maxPages must be >= 0");
        }
        return new Base("random", seed) {
            @Override
            void run(Writer w) {
                if (maxPages == 0 || rng.nextInt(20) == 0) {
                    return;
                }
                int target = w.cap(rng.nextInt(maxPages + 1));
                int zeroShare = rng.nextInt(40);          // 0..39 % zero writes this interval
                while (w.distinct() < target) {
                    int k = rng.nextInt(100);
                    long p = w.randomPage();
                    if (k < zeroShare) {
                        if (rng.nextInt(4) == 0) {
                            w.zeroRun(p, 1 + rng.nextInt(16), target);
                        } else {
                            w.zero(p);
                        }
                    } else if (k < zeroShare + 10) {
                        w.stream(p, 1 + rng.nextInt(300), target);
                    } else if (k < zeroShare + 20) {
                        w.same(p);
                    } else if (k < zeroShare + 40) {
                        w.record(p);
                    } else {
                        w.full(p);
                    }
                }
                w.rewrite(rng.nextInt(target / 4 + 1));
            }
        };
    }

    /** Shared plumbing: the random source, the per-interval writer. */
    private abstract static class Base implements Workload {
        final SplittableRandom rng;
        private final String name;
        private long generation;

        Base(String name, long seed) {
            this.name = name;
            this.rng = new SplittableRandom(seed);
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public void step(GuestMemory memory, DirtyPages dirty) {
            generation++;
            run(new Writer(memory, dirty, rng, generation));
        }

        abstract void run(Writer w);
    }

    /** One interval's writes: picks pages, writes them, marks them, counts distinct pages. */
    private static final class Writer {
        private final List<RamBlock> blocks;
        private final long[] firstPage;
        private final long totalPages;
        private final DirtyPages dirty;
        private final SplittableRandom rng;
        private final long generation;
        private long[] written = new long[1024];
        private int distinct;

        Writer(GuestMemory memory, DirtyPages dirty, SplittableRandom rng, long generation) {
            this.blocks = memory.blocks();
            this.firstPage = new long[blocks.size()];
            long t = 0;
            for (int i = 0; i < blocks.size(); i++) {
                firstPage[i] = t;
                t += blocks.get(i).pages();
            }
            this.totalPages = t;
            this.dirty = dirty;
            this.rng = rng;
            this.generation = generation;
        }

        int distinct() {
            return distinct;
        }

        int cap(int target) {
            return (int) Math.min(target, totalPages * 9 / 10);
        }

        /** A global page number, uniform over all blocks. */
        long randomPage() {
            return rng.nextLong(totalPages);
        }

        private int blockOf(long page) {
            int i = Arrays.binarySearch(firstPage, page);
            return i >= 0 ? i : -i - 2;
        }

        /** Marks the page and returns (segment, offset) through the fields below. */
        private MemorySegment seg;
        private long off;

        private void locate(long page) {
            int b = blockOf(page);
            RamBlock block = blocks.get(b);
            seg = block.guest();
            off = (page - firstPage[b]) << Pages.SHIFT;
            if (!dirty.isDirty(block, off)) {
                dirty.mark(block, off);
                if (distinct == written.length) {
                    written = Arrays.copyOf(written, written.length * 2);
                }
                written[distinct++] = page;
            }
        }

        /** A 16-byte record (generation, page, random tick, "DRTY") at a random 16-byte slot. */
        void record(long page) {
            locate(page);
            long slot = off + 16L * rng.nextInt(Pages.SIZE / 16);
            seg.set(ValueLayout.JAVA_LONG_UNALIGNED, slot, generation);
            seg.set(ValueLayout.JAVA_INT_UNALIGNED, slot + 8, (int) page ^ rng.nextInt());
            seg.set(ValueLayout.JAVA_INT_UNALIGNED, slot + 12, 0x44525459); // "DRTY"
        }

        /** The whole page: random (incompressible) or a repeated 64-byte pattern (compressible). */
        void full(long page) {
            locate(page);
            long s = rng.nextLong() | 1;
            if (rng.nextBoolean()) {
                for (int i = 0; i < Pages.SIZE; i += 8) {
                    s += 0x9E3779B97F4A7C15L;
                    seg.set(ValueLayout.JAVA_LONG_UNALIGNED, off + i, GuestImages.mix(s));
                }
            } else {
                for (int i = 0; i < Pages.SIZE; i += 8) {
                    seg.set(ValueLayout.JAVA_LONG_UNALIGNED, off + i, s + ((i >> 3) & 7));
                }
            }
        }

        void zero(long page) {
            locate(page);
            seg.asSlice(off, Pages.SIZE).fill((byte) 0);
        }

        /** Writes the page's own bytes back: dirty, unchanged. */
        void same(long page) {
            locate(page);
            long v = seg.get(ValueLayout.JAVA_LONG_UNALIGNED, off);
            seg.set(ValueLayout.JAVA_LONG_UNALIGNED, off, v);
        }

        /** Sequential whole-page writes (a memcpy / file read), stopping at the target or the block end. */
        void stream(long start, int pages, int target) {
            int b = blockOf(start);
            long end = Math.min(start + pages, firstPage[b] + blocks.get(b).pages());
            long s = rng.nextLong();
            for (long p = start; p < end && distinct < target; p++) {
                locate(p);
                for (int i = 0; i < Pages.SIZE; i += 8) {
                    seg.set(ValueLayout.JAVA_LONG_UNALIGNED, off + i, s ^ (p << 12 | i));
                }
            }
        }

        /** Zeroes a run of pages (memory freed), stopping at the target or the block end. */
        void zeroRun(long start, int pages, int target) {
            int b = blockOf(start);
            long end = Math.min(start + pages, firstPage[b] + blocks.get(b).pages());
            for (long p = start; p < end && distinct < target; p++) {
                zero(p);
            }
        }

        /** Writes {@code n} pages that were already written in this interval once more. */
        void rewrite(int n) {
            for (int i = 0; i < n && distinct > 0; i++) {
                long p = written[rng.nextInt(distinct)];
                switch (rng.nextInt(4)) {
                    case 0 -> zero(p);
                    case 1 -> full(p);
                    case 2 -> same(p);
                    default -> record(p);
                }
            }
        }
    }
}
