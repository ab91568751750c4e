package dev.multifdcolo.app.colo;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.primary.ColoCheckpoint;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.ColoSummary;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.Workload;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Primary emulator → our COLO secondary, in process: after every commit the secondary's image
 * digest equals the primary's for the same epoch, and so does the failed-over image at the end.
 * Random dirty sets (zero pages, zero→data and data→zero, identical rewrites, pages written
 * several times in one interval), 64 MiB, intervals of 0-5 ms.
 */
class ColoEmulatorTest {
    static final long RAM = 64L << 20;
    static SecondaryRig plain;
    static SecondaryRig mf4;
    static BlockedThreadGuard guard;

    @BeforeAll
    static void start() throws Exception {
        guard = BlockedThreadGuard.start();
        mf4 = new SecondaryRig(4, 10_000);
        plain = new SecondaryRig(0, 10_000);
    }

    @AfterAll
    static void stop() {
        if (mf4 != null) {
            mf4.close();
        }
        if (plain != null) {
            plain.close();
        }
        guard.assertNone();
    }

    @Test
    void modernMultifd4_1000checkpoints() throws Exception {
        run(mf4, Framing.MODERN, 4, 1000, Workloads.random(11, 1500), 11);
    }

    @Test
    void legacyMultifd4_100checkpoints() throws Exception {
        run(mf4, Framing.LEGACY, 4, 100, Workloads.random(72, 1500), 72);
    }

    @Test
    void modernPlain_50checkpoints() throws Exception {
        run(plain, Framing.MODERN, 0, 50, Workloads.random(5, 1500), 5);
    }

    @Test
    void legacyPlain_50checkpoints() throws Exception {
        run(plain, Framing.LEGACY, 0, 50, Workloads.random(6, 1500), 6);
    }

    @Test
    void loadWorkloadMultifd4_20checkpoints() throws Exception {
        // bursts up to the 90 % cap of a 64 MiB guest, streaming writes and zero runs
        run(mf4, Framing.MODERN, 4, 20, Workloads.load(7), 7);
    }

    @Test
    void idleWorkloadLegacyMultifd4_20checkpoints() throws Exception {
        run(mf4, Framing.LEGACY, 4, 20, Workloads.idle(8), 8);
    }

    /** COLO with compression (the upstream motivation): zstd, 4 channels, 200 checkpoints, digests equal. */
    @Test
    void zstdMultifd4_200checkpoints() throws Exception {
        try (SecondaryRig rig = new SecondaryRig(4, 10_000, Compression.ZSTD)) {
            run(rig, Framing.MODERN, 4, 200, Workloads.random(21, 3000), 21);
        }
    }

    /** Multifd compression and several RAMBlocks (the CONTINUE flag across blocks and checkpoints). */
    @ParameterizedTest(name = "{0} multifd {1} {2}, {3} block(s)")
    @CsvSource({"MODERN,4,ZSTD,1", "LEGACY,4,ZLIB,1", "MODERN,2,ZSTD,3", "MODERN,4,NONE,2", "LEGACY,4,NONE,2",
            "LEGACY,0,NONE,3"})
    void variants_50checkpoints(Framing framing, int channels, Compression comp, int blocks) throws Exception {
        List<BlockSpec> specs = new ArrayList<>();
        for (int b = 0; b < blocks; b++) {
            specs.add(new BlockSpec(b == 0 ? "pc.ram" : "ram" + b, (8L << 20) * (b + 1)));
        }
        try (SecondaryRig rig = new SecondaryRig(channels, 10_000, comp);
             GuestMemory mem = GuestMemory.allocate(specs, 1L << 30, Backing.anonymous())) {
            for (RamBlock b : mem.blocks()) {
                GuestImages.fill(b, 40 + b.index(), 0.3);
            }
            run(rig, framing, channels, 50, Workloads.random(blocks * 10L + channels, 3000), mem, 40);
        }
    }

    private static void run(SecondaryRig rig, Framing framing, int channels, int n, Workload w, long seed)
            throws Exception {
        try (GuestMemory mem = SecondaryRig.image(RAM, seed)) {
            run(rig, framing, channels, n, w, mem, seed);
        }
    }

    private static void run(SecondaryRig rig, Framing framing, int channels, int n, Workload w, GuestMemory mem,
                            long seed) throws Exception {
        Future<MigrationResult> outcome = rig.next();
        SplittableRandom rnd = new SplittableRandom(seed);
        List<ColoCheckpoint> cps = new ArrayList<>();
        long t0 = System.nanoTime();
        ColoPrimary p = rig.startPrimary(framing, channels, mem, w, ColoPrimary.Options.defaults());
        try {
            assertEquals(p.digest(0), rig.commits.get(0L).digest(), "precopy image (epoch 0)");
            for (int i = 1; i <= n; i++) {
                p.runGuest();
                int sleep = rnd.nextInt(6);
                if (sleep > 0) {
                    Thread.sleep(sleep);
                }
                ColoCheckpoint c = p.checkpoint();
                cps.add(c);
                assertEquals(i, c.epoch());
                // commit listeners run before the secondary sends LOADED
                Checkpoint s = rig.commits.get(c.epoch());
                assertNotNull(s, "no commit for epoch " + c.epoch());
                assertEquals(c.digest(), s.digest(), "digest at epoch " + c.epoch());
                assertEquals(c.dirtyPages(), s.dirtyPages(), "pages flushed at epoch " + c.epoch());
                assertEquals(183, s.blobBytes());
                assertTrue(c.transferNanos() > 0 && c.pauseNanos() >= c.transferNanos(), c.line());
            }
        } finally {
            p.close();
        }
        MigrationResult res = SecondaryRig.await(outcome, 10);
        IncomingMigration session = rig.session.get();
        try {
            assertNotNull(res.colo());
            assertEquals(n, res.colo().epoch());
            assertEquals(IncomingMigration.Phase.FAILED_OVER, session.phase());
            assertEquals(p.digest(n), res.memory().fastDigest(), "failed-over image");
        } finally {
            res.memory().close();
        }
        ColoSummary sum = ColoSummary.of(cps);
        System.out.printf("%s %s multifd %d %s, %d block(s), %d checkpoints in %.1f s: %s%n", w.name(), framing,
                channels, rig.compression, mem.blocks().size(), n,
                (System.nanoTime() - t0) / 1e9, sum.text().replace('\n', ';'));
        long zero = cps.stream().mapToLong(ColoCheckpoint::zeroPages).sum();
        assertTrue(zero > 0, "zero pages were sent");
    }
}
