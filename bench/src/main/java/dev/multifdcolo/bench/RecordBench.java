package dev.multifdcolo.bench;

import dev.multifdcolo.memory.DirtyBitmap;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * Dirty-bitmap recording, ns per page: {@link DirtyBitmap#set} (atomic OR on a 64-bit word plus
 * the dirty count when the bit was clear) as every event loop does it per received page of a COLO
 * checkpoint. 1 GiB of pages (262,144 bits, 32 KiB of words). The bitmap is cleared once per
 * iteration, so most sets find the bit already set after the first pass (the steady state of
 * a page dirtied again in a later packet costs the same atomic; the count update is skipped).
 *
 * <ul>
 * <li>{@code random}: 128 random pages (one packet's worth), one thread;</li>
 * <li>{@code sequential}: 128 consecutive pages (two words);</li>
 * <li>{@code random2Threads}: two threads on one bitmap (two channels' event loops at once;
 *     on this 2-core machine that is all cores).</li>
 * </ul>
 *
 * <pre>java -jar target/multifd-colo-bench.jar RecordBench</pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-Xmx512m"})
public class RecordBench {
    static final long PAGES = (1L << 30) / 4096;
    static final int N = 128;

    final DirtyBitmap bitmap = new DirtyBitmap(PAGES);

    @Setup(Level.Iteration)
    public void clear() {
        bitmap.clear();
    }

    /** Per-thread page lists (different seeds per thread). */
    @State(Scope.Thread)
    public static class Pages {
        final long[] random = new long[N];
        long base;

        @Setup(Level.Trial)
        public void make() {
            Random rnd = new Random(Thread.currentThread().threadId());
            for (int i = 0; i < N; i++) {
                random[i] = rnd.nextInt((int) PAGES);
            }
            base = (long) rnd.nextInt((int) (PAGES - N)) & ~63L;
        }
    }

    @Benchmark
    @OperationsPerInvocation(N)
    public int random(Pages p) {
        int n = 0;
        for (long page : p.random) {
            n += bitmap.set(page) ? 1 : 0;
        }
        return n;
    }

    @Benchmark
    @OperationsPerInvocation(N)
    public int sequential(Pages p) {
        int n = 0;
        for (int i = 0; i < N; i++) {
            n += bitmap.set(p.base + i) ? 1 : 0;
        }
        return n;
    }

    @Benchmark
    @Threads(2)
    @OperationsPerInvocation(N)
    public int random2Threads(Pages p) {
        return random(p);
    }
}
