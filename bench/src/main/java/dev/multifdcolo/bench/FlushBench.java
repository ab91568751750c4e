package dev.multifdcolo.bench;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.ColoFlush;
import dev.multifdcolo.memory.DirtyBitmap;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * The COLO flush against the memcpy limit, same run: flushing N scattered dirty pages
 * (cache → guest, runs coalesced) vs one bulk {@code MemorySegment.copy} of the same number of
 * bytes, and the cost of recording a page in the dirty bitmap.
 *
 * <pre>java -jar target/multifd-colo-bench.jar FlushBench</pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
public class FlushBench {
    static final long RAM = 1L << 30;

    /** Dirty pages per checkpoint: 10 k (the upstream "load" order) and 100 k. */
    @Param({"10000", "100000"})
    int dirty;

    GuestMemory memory;
    RamBlock block;
    long[] pages;
    MemorySegment bulkSrc;
    MemorySegment bulkDst;

    @Setup(Level.Trial)
    public void setup() throws Exception {
        memory = GuestMemory.allocate(List.of(new BlockSpec("ram", RAM)), RAM, Backing.anonymous());
        memory.enableColo(Backing.anonymous());
        block = memory.block("ram");
        block.cache().fill((byte) 1);
        Random rnd = new Random(42);
        java.util.BitSet set = new java.util.BitSet();
        long total = RAM / 4096;
        while (set.cardinality() < dirty) {
            set.set(rnd.nextInt((int) total));
        }
        pages = set.stream().asLongStream().toArray();
        // bulk baseline: the same bytes as one contiguous copy (the limit the flush is judged by)
        bulkSrc = block.cache().asSlice(0, (long) dirty * 4096);
        bulkDst = block.guest().asSlice(0, (long) dirty * 4096);
    }

    @Setup(Level.Invocation)
    public void markDirty() {
        DirtyBitmap bm = block.bitmap();
        for (long p : pages) {
            bm.set(p);
        }
    }

    @Benchmark
    public ColoFlush.Stats flushScattered() {
        return ColoFlush.flush(block, 0, block.bitmap().wordCount());
    }

    @Benchmark
    public MemorySegment bulkCopySameBytes() {
        MemorySegment.copy(bulkSrc, 0, bulkDst, 0, bulkSrc.byteSize());
        return bulkDst;
    }

    @TearDown(Level.Trial)
    public void close() {
        memory.close();
    }

    /** Recording one checkpoint page in the bitmap (what each event loop does per received page). */
    @State(Scope.Thread)
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    @Warmup(iterations = 3, time = 1)
    @Measurement(iterations = 5, time = 1)
    @Fork(value = 1, jvmArgsAppend = {"-Xmx512m"})
    public static class Record {
        DirtyBitmap bitmap = new DirtyBitmap(RAM / 4096);
        long[] offsets = new long[128];
        int round;

        @Setup(Level.Iteration)
        public void offsets() {
            Random rnd = new Random(7);
            for (int i = 0; i < offsets.length; i++) {
                offsets[i] = rnd.nextInt((int) (RAM / 4096));
            }
        }

        /**
         * One multifd packet's worth (128 pages) recorded, then those words taken again (as the
         * flush does); divide by 128 for ns/page.
         */
        @Benchmark
        public long record128Pages() {
            long n = 0;
            for (long p : offsets) {
                n += bitmap.set(p) ? 1 : 0;
            }
            for (long p : offsets) {
                bitmap.take((int) (p >>> 6));
            }
            return n;
        }
    }
}
