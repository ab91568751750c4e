package dev.multifdcolo.memory;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ColoFlushTest {

    static GuestMemory colo(long bytes) throws Exception {
        GuestMemory m = GuestMemory.allocate(List.of(new BlockSpec("ram", bytes)), 1L << 40, Backing.anonymous());
        m.enableColo(Backing.anonymous());
        return m;
    }

    /** Reference: what the guest must look like after a flush of `dirty`. */
    static byte[] expected(byte[] guestBefore, byte[] cache, BitSet dirty) {
        byte[] e = guestBefore.clone();
        for (int p = dirty.nextSetBit(0); p >= 0; p = dirty.nextSetBit(p + 1)) {
            System.arraycopy(cache, p * Pages.SIZE, e, p * Pages.SIZE, Pages.SIZE);
        }
        return e;
    }

    @Test
    void flushCopiesExactlyTheDirtyPagesIncludingRunsAcrossWords() throws Exception {
        int pages = 1024;
        try (GuestMemory m = colo((long) pages * Pages.SIZE)) {
            RamBlock b = m.block("ram");
            Random rnd = new Random(7);
            byte[] cache = new byte[pages * Pages.SIZE];
            rnd.nextBytes(cache);
            byte[] guest = new byte[pages * Pages.SIZE];
            rnd.nextBytes(guest);
            MemorySegment.copy(cache, 0, b.cache(), ValueLayout.JAVA_BYTE, 0, cache.length);
            MemorySegment.copy(guest, 0, b.guest(), ValueLayout.JAVA_BYTE, 0, guest.length);
            BitSet dirty = new BitSet();
            // runs crossing word boundaries (60..70, 127..129, 190..320), full words, singles, last page
            for (int[] r : new int[][]{{60, 71}, {127, 130}, {190, 321}, {400, 401}, {448, 512}, {1023, 1024}}) {
                dirty.set(r[0], r[1]);
            }
            for (int i = 0; i < 50; i++) {
                dirty.set(530 + rnd.nextInt(490));
            }
            for (int p = dirty.nextSetBit(0); p >= 0; p = dirty.nextSetBit(p + 1)) {
                assertTrue(b.bitmap().set(p));
            }
            assertEquals(dirty.cardinality(), b.bitmap().dirtyPages());
            ColoFlush.Stats s = ColoFlush.flush(b, 0, b.bitmap().wordCount());
            assertEquals(dirty.cardinality(), s.pages());
            assertArrayEquals(expected(guest, cache, dirty), b.guest().toArray(ValueLayout.JAVA_BYTE));
            assertEquals(0, b.bitmap().dirtyPages());
            // the run 190..320 spans three words and is a single copy; count runs independently
            int runs = 0;
            for (int p = dirty.nextSetBit(0); p >= 0; p = dirty.nextSetBit(dirty.nextClearBit(p))) {
                runs++;
            }
            assertEquals(runs, s.runs(), "one bulk copy per run of consecutive pages");
        }
    }

    @Test
    void splitRangesGiveTheSameResultAsOneRange() throws Exception {
        int pages = 4096;
        try (GuestMemory m = colo((long) pages * Pages.SIZE)) {
            RamBlock b = m.block("ram");
            Random rnd = new Random(11);
            byte[] cache = new byte[pages * Pages.SIZE];
            rnd.nextBytes(cache);
            MemorySegment.copy(cache, 0, b.cache(), ValueLayout.JAVA_BYTE, 0, cache.length);
            BitSet dirty = new BitSet();
            for (int i = 0; i < 2000; i++) {
                int p = rnd.nextInt(pages);
                int len = 1 + rnd.nextInt(5);
                for (int k = p; k < Math.min(pages, p + len); k++) {
                    dirty.set(k);
                    b.bitmap().set(k);
                }
            }
            int words = b.bitmap().wordCount();
            long total = 0;
            for (int[] r : new int[][]{{0, 7}, {7, 8}, {8, 33}, {33, words}}) {
                total += ColoFlush.flush(b, r[0], r[1]).pages();
            }
            assertEquals(dirty.cardinality(), total);
            assertArrayEquals(expected(new byte[pages * Pages.SIZE], cache, dirty), b.guest().toArray(ValueLayout.JAVA_BYTE));
        }
    }

    @Test
    void concurrentRecordingFromEightThreadsLosesNoBit() throws Exception {
        long pages = 1 << 20;
        DirtyBitmap bm = new DirtyBitmap(pages);
        ExecutorService pool = Executors.newFixedThreadPool(8);
        CountDownLatch go = new CountDownLatch(1);
        BitSet[] mine = new BitSet[8];
        Future<?>[] f = new Future<?>[8];
        for (int t = 0; t < 8; t++) {
            int id = t;
            mine[t] = new BitSet();
            f[t] = pool.submit(() -> {
                Random rnd = new Random(id);
                go.await();
                // overlapping pages in the same words from every thread
                for (int i = 0; i < 200_000; i++) {
                    int p = rnd.nextInt(1 << 16);
                    bm.set(p);
                    mine[id].set(p);
                }
                return null;
            });
        }
        go.countDown();
        for (Future<?> x : f) {
            x.get();
        }
        pool.shutdown();
        BitSet all = new BitSet();
        for (BitSet b : mine) {
            all.or(b);
        }
        assertEquals(all.cardinality(), bm.dirtyPages(), "dirty count = distinct pages");
        for (int p = 0; p < (1 << 16); p++) {
            assertEquals(all.get(p), bm.isSet(p), "page " + p);
        }
        assertFalse(bm.isSet((1 << 16) + 5));
    }
}
