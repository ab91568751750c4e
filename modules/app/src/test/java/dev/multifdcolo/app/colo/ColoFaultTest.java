package dev.multifdcolo.app.colo;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoCheckpoint;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.DirtyPages;
import dev.multifdcolo.primary.Fault;
import dev.multifdcolo.primary.FaultReport;
import dev.multifdcolo.primary.Workload;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The primary's connections cut (RST) at random points of a checkpoint — inside the live RAM,
 * between EOF and VMSTATE_SIZE, inside the blob, during the secondary's flush, at random byte
 * offsets of all channels or of the main channel alone — or one multifd channel cut, or the
 * primary stalling: every time the secondary fails over and keeps exactly the image of the epoch
 * it reports (the last commit, or the cut checkpoint when all of it had arrived, §9.9), with the
 * primary's digest for that epoch, and goes on serving the next session.
 */
class ColoFaultTest {
    static final long RAM = 8L << 20;
    static final int CUTS = 60;
    static SecondaryRig mf4;
    static SecondaryRig plain;
    static SecondaryRig heartbeat;
    static BlockedThreadGuard guard;

    @BeforeAll
    static void start() throws Exception {
        guard = BlockedThreadGuard.start();
        mf4 = new SecondaryRig(4, 10_000);
        plain = new SecondaryRig(0, 10_000);
        heartbeat = new SecondaryRig(4, 300);
    }

    @AfterAll
    static void stop() {
        for (SecondaryRig r : new SecondaryRig[] {mf4, plain, heartbeat}) {
            if (r != null) {
                r.close();
            }
        }
        guard.assertNone();
    }

    private static ColoPrimary.Options options() {
        return ColoPrimary.Options.defaults().withReplyTimeout(Duration.ofSeconds(10));
    }

    /** Checks the failed-over replica against what the fault allows; returns the kept epoch. */
    private static long verify(SecondaryRig rig, Future<MigrationResult> outcome, FaultReport r) throws Exception {
        MigrationResult res = SecondaryRig.await(outcome, 10);
        try {
            assertNotNull(res.colo(), "COLO result");
            long e = res.colo().epoch();
            String what = r + " -> secondary epoch " + e + " (" + res.colo().failoverReason() + ")";
            assertTrue(e >= r.minEpoch() && e <= r.maxEpoch(), "epoch out of range: " + what);
            String expected = r.digestOf(e);
            assertEquals(expected, rig.commits.get(e).digest(), "commit digest: " + what);
            assertEquals(expected, res.memory().fastDigest(), "failed-over image: " + what);
            assertEquals(expected, res.colo().last().digest(), "last checkpoint: " + what);
            IncomingMigration s = rig.session.get();
            assertEquals(IncomingMigration.Phase.FAILED_OVER, s.phase(), what);
            return e;
        } finally {
            res.memory().close();
        }
    }

    @Test
    void randomizedCuts() throws Exception {
        SplittableRandom rnd = new SplittableRandom(0xC0_10);
        Map<String, Integer> tally = new TreeMap<>();
        long t0 = System.nanoTime();
        for (int i = 0; i < CUTS; i++) {
            boolean multifd = i % 3 != 2;
            Framing framing = rnd.nextBoolean() ? Framing.MODERN : Framing.LEGACY;
            SecondaryRig rig = multifd ? mf4 : plain;
            int channels = multifd ? 4 : 0;
            long seed = rnd.nextLong();
            Future<MigrationResult> outcome = rig.next();
            try (GuestMemory mem = SecondaryRig.image(RAM, seed)) {
                ColoPrimary p = rig.startPrimary(framing, channels, mem, Workloads.random(seed, 1500), options());
                try {
                    int clean = rnd.nextInt(4);
                    for (int c = 0; c < clean; c++) {
                        ColoCheckpoint cp = p.checkpoint();
                        assertEquals(cp.digest(), rig.commits.get(cp.epoch()).digest());
                    }
                    p.runGuest();
                    Fault fault = randomFault(i, rnd, p, channels);
                    try {
                        p.checkpoint(fault);
                    } catch (IOException expected) {
                        // the usual end of a cut checkpoint
                    }
                    FaultReport r = p.lastFault();
                    assertNotNull(r, "fault report");
                    assertNotNull(r.stage(), "the fault fired: " + r);
                    long tv = System.nanoTime();
                    long e = verify(rig, outcome, r);
                    String reason = outcome.result().colo().failoverReason();
                    assertTrue(!reason.contains("heartbeat"), "the cut was noticed only by the heartbeat: " + r
                            + " -> " + reason);
                    System.out.printf("cut %d: %s %s multifd %d: %s -> epoch %d (%s) after %.0f ms%n", i, framing,
                            fault, channels, r, e, outcome.result().colo().failoverReason(),
                            (System.nanoTime() - tv) / 1e6);
                    String key = fault.where() + (fault.channel() >= 0 ? " (multifd " + "channel)" : fault.channel()
                            == Fault.MAIN ? " (main only)" : "") + " -> " + (e == r.epoch() ? "k" : "k-1");
                    tally.merge(key, 1, Integer::sum);
                } finally {
                    p.kill();
                }
            }
        }
        System.out.printf("%d randomized cuts in %.1f s: %s%n", CUTS, (System.nanoTime() - t0) / 1e9, tally);
        assertTrue(tally.keySet().stream().anyMatch(k -> k.endsWith("-> k")), "some cut kept the cut checkpoint");
        assertTrue(tally.keySet().stream().anyMatch(k -> k.endsWith("-> k-1")), "some cut kept the previous one");
        // the replica is still serving: one clean session after all the cuts
        cleanSession(mf4, Framing.MODERN, 4);
    }

    private static Fault randomFault(int i, SplittableRandom rnd, ColoPrimary p, int channels) {
        long estimate = p.estimatedCheckpointBytes();
        int kinds = channels > 0 ? 10 : 9;
        return switch ((i / 3 + i) % kinds) {
            case 0 -> Fault.cutAtByte(rnd.nextLong(estimate + estimate / 20 + 1));
            case 1 -> Fault.cutLiveRam(rnd.nextDouble());
            case 2 -> Fault.cut(Fault.Where.BEFORE_SIZE);
            case 3 -> Fault.cutInBlob(rnd.nextDouble());
            case 4 -> Fault.cut(Fault.Where.AFTER_BLOB);
            case 5 -> Fault.cut(Fault.Where.DURING_FLUSH);
            case 6 -> Fault.cut(Fault.Where.AFTER_REQUEST);
            case 7 -> Fault.cut(Fault.Where.BEFORE_REQUEST);
            case 8 -> Fault.cutMainAtByte(rnd.nextLong(channels > 0 ? 300 : estimate + 1));
            default -> Fault.cutMultifdChannel(rnd.nextInt(channels), rnd.nextLong(estimate / channels + 1));
        };
    }

    private static void cleanSession(SecondaryRig rig, Framing framing, int channels) throws Exception {
        Future<MigrationResult> outcome = rig.next();
        try (GuestMemory mem = SecondaryRig.image(RAM, 99)) {
            ColoPrimary p = rig.startPrimary(framing, channels, mem, Workloads.random(99, 1000), options());
            String last;
            try {
                for (ColoCheckpoint cp : p.run(5, Duration.ZERO, null)) {
                    assertEquals(cp.digest(), rig.commits.get(cp.epoch()).digest());
                }
                last = p.digest(5);
            } finally {
                p.close();
            }
            MigrationResult res = SecondaryRig.await(outcome, 10);
            try {
                assertEquals(5, res.colo().epoch());
                assertEquals(last, res.memory().fastDigest());
            } finally {
                res.memory().close();
            }
        }
    }

    @Test
    void oneMultifdChannelCut() throws Exception {
        for (Framing framing : Framing.values()) {
            for (int ch = 0; ch < 4; ch++) {
                Future<MigrationResult> outcome = mf4.next();
                try (GuestMemory mem = SecondaryRig.image(RAM, ch)) {
                    ColoPrimary p = mf4.startPrimary(framing, 4, mem, Workloads.random(ch, 1500), options());
                    try {
                        p.checkpoint();
                        p.runGuest();
                        // a few bytes in: inside its first packet (or SYNC) of the checkpoint
                        assertThrows(IOException.class, () -> p.checkpoint(Fault.cutMultifdChannel(2, 100)));
                        FaultReport r = p.lastFault();
                        assertEquals(FaultReport.Stage.LIVE, r.stage(), r.toString());
                        assertEquals(1, verify(mf4, outcome, r));
                        MigrationResult res = outcome.result();
                        assertTrue(res.colo().failoverReason().contains("multifd channel 2"),
                                res.colo().failoverReason());
                    } finally {
                        p.kill();
                    }
                }
            }
        }
    }

    @Test
    void oneMultifdChannelCutAtEachPoint() throws Exception {
        int i = 0;
        for (Fault.Where where : Fault.Where.values()) {
            if (where == Fault.Where.AT_BYTE) {
                continue;
            }
            Framing framing = i++ % 2 == 0 ? Framing.MODERN : Framing.LEGACY;
            Fault fault = new Fault(where, i % 4, 0, 0.5, false);
            Future<MigrationResult> outcome = mf4.next();
            try (GuestMemory mem = SecondaryRig.image(RAM, i)) {
                ColoPrimary p = mf4.startPrimary(framing, 4, mem, Workloads.random(i, 1500), options());
                try {
                    p.checkpoint();
                    p.runGuest();
                    try {
                        p.checkpoint(fault);
                    } catch (IOException expected) {
                        // the secondary failed over and closed the rest
                    }
                    FaultReport r = p.lastFault();
                    assertNotNull(r, where + ": fault report");
                    long e = verify(mf4, outcome, r);
                    String reason = outcome.result().colo().failoverReason();
                    System.out.printf("%s %s: %s -> epoch %d (%s)%n", framing, fault, r.stage(), e, reason);
                    assertTrue(!reason.contains("heartbeat"), where + ": noticed only by the heartbeat: " + reason);
                } finally {
                    p.kill();
                }
            }
        }
    }

    /**
     * A healthy primary whose checkpoint takes longer than the heartbeat (256 MiB rewritten, heartbeat
     * 300 ms) must not be failed over: bytes keep arriving. The secondary's heartbeat counts from
     * one CHECKPOINT_REQUEST to the next, so today it fires mid-checkpoint, commits after the flush
     * and fails over instead of sending VMSTATE_LOADED.
     */
    @Test
    void checkpointLongerThanTheHeartbeatIsNoFailover() throws Exception {
        Future<MigrationResult> outcome = heartbeat.next();
        Workload everything = new Workload() {
            private long generation;

            @Override
            public String name() {
                return "everything";
            }

            @Override
            public void step(GuestMemory m, DirtyPages d) {
                generation++;
                for (RamBlock b : m.blocks()) {
                    for (long off = 0; off < b.length(); off += 4096) {
                        b.guest().set(ValueLayout.JAVA_LONG_UNALIGNED, off, generation ^ off);
                    }
                    d.markRange(b, 0, b.length());
                }
            }
        };
        try (GuestMemory mem = SecondaryRig.image(256L << 20, 5)) {
            ColoPrimary p = heartbeat.startPrimary(Framing.MODERN, 4, mem, everything,
                    options().withDigests(false).withPrecopyDirtyRounds(0));
            try {
                for (int i = 0; i < 3; i++) {
                    ColoCheckpoint c = p.checkpoint();
                    System.out.println(c.line());
                }
            } finally {
                p.close();
            }
            MigrationResult res = SecondaryRig.await(outcome, 10);
            res.memory().close();
            assertEquals(3, res.colo().epoch(), res.colo().failoverReason());
        }
    }

    @Test
    void stallLongerThanTheHeartbeat() throws Exception {
        for (Fault fault : new Fault[] {Fault.stall(Fault.Where.LIVE_RAM), Fault.stall(Fault.Where.BEFORE_REQUEST),
                Fault.stall(Fault.Where.IN_BLOB)}) {
            Future<MigrationResult> outcome = heartbeat.next();
            try (GuestMemory mem = SecondaryRig.image(RAM, 3)) {
                ColoPrimary p = heartbeat.startPrimary(Framing.MODERN, 4, mem, Workloads.random(3, 1500), options());
                CompletableFuture<Void> stalled;
                try {
                    p.checkpoint();
                    p.checkpoint();
                    p.runGuest();
                    long t = System.nanoTime();
                    stalled = CompletableFuture.runAsync(() -> {
                        try {
                            p.checkpoint(fault);
                        } catch (IOException e) {
                            throw new RuntimeException(e);
                        }
                    });
                    MigrationResult res = SecondaryRig.await(outcome, 10);
                    long waited = (System.nanoTime() - t) / 1_000_000;
                    res.memory().close();
                    assertTrue(res.colo().failoverReason().contains("heartbeat"), res.colo().failoverReason());
                    assertTrue(waited >= 250, "failover after " + waited + " ms");
                    assertTrue(!stalled.isDone(), "the primary is still stalled, nothing was closed");
                } finally {
                    p.kill();
                }
                assertThrows(Exception.class, () -> stalled.get(5, TimeUnit.SECONDS));
                FaultReport r = p.lastFault();
                assertEquals(2, r.minEpoch());
                assertEquals(2, r.maxEpoch());
                assertEquals(r.digestOf(2), heartbeat.commits.get(2L).digest());
            }
        }
    }
}
