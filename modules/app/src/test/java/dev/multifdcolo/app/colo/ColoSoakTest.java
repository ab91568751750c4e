package dev.multifdcolo.app.colo;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoCheckpoint;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.wire.Framing;
import org.junit.jupiter.api.Test;

import java.io.File;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 7's soak: {@code -Dsoak.checkpoints} COLO checkpoints (1 000 by default; the README's run
 * used 10 000) from the primary emulator into one multifd-4 replica, back to back, every commit's
 * digest compared with the primary's. Every {@code checkpoints/20} checkpoints the process's heap
 * after a GC, direct memory (JDK buffers and Netty's allocators), live threads and open file
 * descriptors are sampled. Flat means: the median of the last quarter of samples exceeds the
 * median of the first quarter (after a warm-up sample) by at most 16 MiB of heap, 8 MiB of direct
 * memory, 2 threads and 4 file descriptors. Samples go to {@code target/soak.csv}.
 */
class ColoSoakTest {
    static final int CHECKPOINTS = Integer.getInteger("soak.checkpoints", 1000);

    record Sample(long checkpoint, long heap, long direct, long nettyDirect, int threads, long fds) {
        String csv() {
            return checkpoint + "," + heap + "," + direct + "," + nettyDirect + "," + threads + "," + fds;
        }
    }

    static Sample sample(long checkpoint) {
        System.gc();
        long heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
        long direct = 0;
        for (BufferPoolMXBean b : ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)) {
            if (b.getName().equals("direct")) {
                direct = b.getMemoryUsed();
            }
        }
        long netty = nettyDirect(io.netty.buffer.ByteBufAllocator.DEFAULT);
        if (io.netty.buffer.PooledByteBufAllocator.DEFAULT != io.netty.buffer.ByteBufAllocator.DEFAULT) {
            netty += nettyDirect(io.netty.buffer.PooledByteBufAllocator.DEFAULT);
        }
        String[] fds = new File("/proc/self/fd").list();
        return new Sample(checkpoint, heap, direct, netty, ManagementFactory.getThreadMXBean().getThreadCount(), fds == null ? -1 : fds.length);
    }

    /** Direct memory a Netty allocator holds (its pools included): what a buffer leak would grow. */
    static long nettyDirect(io.netty.buffer.ByteBufAllocator a) {
        return a instanceof io.netty.buffer.ByteBufAllocatorMetricProvider p ? p.metric().usedDirectMemory() : 0;
    }

    static long median(List<Sample> s, java.util.function.ToLongFunction<Sample> f) {
        long[] v = s.stream().mapToLong(f).sorted().toArray();
        return v[v.length / 2];
    }

    @Test
    void checkpointsBackToBackLeaveMemoryThreadsAndDescriptorsFlat() throws Exception {
        int every = Math.max(1, CHECKPOINTS / 20);
        List<Sample> samples = new ArrayList<>();
        long t0 = System.nanoTime();
        try (SecondaryRig rig = new SecondaryRig(4, 10_000);
             GuestMemory mem = SecondaryRig.image(8L << 20, 77)) {
            var outcome = rig.next();
            ColoPrimary p = rig.startPrimary(Framing.MODERN, 4, mem, Workloads.random(77, 500),
                    ColoPrimary.Options.defaults().withReplyTimeout(Duration.ofSeconds(10)));
            String last;
            try {
                samples.add(sample(0));
                for (int i = 1; i <= CHECKPOINTS; i++) {
                    p.runGuest();
                    ColoCheckpoint cp = p.checkpoint();
                    assertEquals(cp.digest(), rig.commits.get(cp.epoch()).digest(), "checkpoint " + cp.epoch());
                    rig.commits.remove(cp.epoch() - 1);
                    if (i % every == 0) {
                        samples.add(sample(i));
                    }
                }
                last = p.digest(CHECKPOINTS);
            } finally {
                p.close();
            }
            MigrationResult res = SecondaryRig.await(outcome, 15);
            try {
                assertEquals(CHECKPOINTS, res.colo().epoch());
                assertEquals(last, res.memory().fastDigest(), "image after the soak");
            } finally {
                res.memory().close();
            }
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        StringBuilder csv = new StringBuilder("checkpoint,heap_bytes,direct_bytes,netty_direct_bytes,threads,fds\n");
        samples.forEach(s -> csv.append(s.csv()).append('\n'));
        Files.createDirectories(Path.of("target"));
        Files.writeString(Path.of("target/soak.csv"), csv);
        int q = Math.max(1, (samples.size() - 1) / 4);
        List<Sample> first = samples.subList(1, 1 + q);
        List<Sample> lastQ = samples.subList(samples.size() - q, samples.size());
        long dHeap = median(lastQ, Sample::heap) - median(first, Sample::heap);
        long dDirect = Math.max(median(lastQ, Sample::direct) - median(first, Sample::direct),
                median(lastQ, Sample::nettyDirect) - median(first, Sample::nettyDirect));
        long dThreads = median(lastQ, Sample::threads) - median(first, Sample::threads);
        long dFds = median(lastQ, Sample::fds) - median(first, Sample::fds);
        String summary = String.format("soak: %d checkpoints in %.1f s (%.2f ms each); first→last quarter medians:"
                        + " heap %+.1f MiB (%.1f MiB), direct %+.1f MiB, threads %+d (%d), fds %+d (%d)", CHECKPOINTS, secs,
                secs * 1000 / CHECKPOINTS, dHeap / 1048576.0, median(lastQ, Sample::heap) / 1048576.0,
                dDirect / 1048576.0, dThreads, median(lastQ, Sample::threads), dFds, median(lastQ, Sample::fds));
        System.out.println(summary);
        Files.writeString(Path.of("target/soak.txt"), summary + "\n");
        assertTrue(dHeap <= 16L << 20, summary + "\n" + csv);
        assertTrue(dDirect <= 8L << 20, summary + "\n" + csv);
        assertTrue(dThreads <= 2, summary + "\n" + csv);
        assertTrue(dFds <= 4, summary + "\n" + csv);
    }
}
