package dev.multifdcolo.app.colo;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoCheckpoint;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.Fault;
import dev.multifdcolo.primary.FaultReport;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 7's COLO fault matrix, laid out like QEMU's own COLO tests: {plain, multifd-4} × {the
 * primary dies (every socket reset), the network stalls (no byte for longer than the heartbeat),
 * one multifd channel dies} × {idle (between checkpoints), mid-checkpoint (half of the live RAM
 * sent)}. Every cell, {@code -Dfault.reps} times (3 by default): the replica fails over with the
 * reason of that fault, its image is the digest of the epoch it reports (the last commit: the
 * primary's digest for it), and a neighbour replica running its own COLO session on the same
 * Vert.x all along keeps committing and ends byte-exact. The table goes to
 * {@code target/fault-matrix.md} (quoted in the README).
 */
class ColoFaultMatrixTest {
    static final long RAM = 8L << 20;
    static final long HEARTBEAT_MS = 1000;
    static final int REPS = Integer.getInteger("fault.reps", 3);

    enum Kind {
        PRIMARY_DIES("primary dies (RST)"), STALL("network stall > heartbeat"), CHANNEL_DIES("one multifd channel dies");

        final String label;

        Kind(String label) {
            this.label = label;
        }
    }

    static Fault fault(Kind kind, boolean mid, int rep) {
        Fault.Where where = mid ? Fault.Where.LIVE_RAM : Fault.Where.BEFORE_REQUEST;
        return switch (kind) {
            case PRIMARY_DIES -> new Fault(where, Fault.ALL_CHANNELS, 0, 0.5, false);
            case STALL -> new Fault(where, Fault.ALL_CHANNELS, 0, 0.5, true);
            case CHANNEL_DIES -> new Fault(where, rep % 4, 0, 0.5, false);
        };
    }

    /** What the failover reason must say for {@code kind}. */
    static boolean reasonFits(Kind kind, String reason, int channel) {
        return switch (kind) {
            case PRIMARY_DIES -> reason.contains("closed") && !reason.contains("heartbeat");
            case STALL -> reason.contains("colo-heartbeat") && reason.contains("no bytes from the primary");
            case CHANNEL_DIES -> reason.contains("multifd channel " + channel) && !reason.contains("heartbeat");
        };
    }

    @Test
    void everyCellFailsOverToTheLastCommitAndTheNeighbourKeepsRunning() throws Exception {
        Map<String, int[]> table = new LinkedHashMap<>();
        Map<String, List<Long>> detection = new LinkedHashMap<>();
        List<String> failures = new ArrayList<>();
        try (SecondaryRig plain = new SecondaryRig(0, HEARTBEAT_MS);
             SecondaryRig mf4 = new SecondaryRig(4, HEARTBEAT_MS);
             SecondaryRig neighbour = new SecondaryRig(4, 10_000)) {
            Neighbour n = Neighbour.start(neighbour);
            for (int rep = 0; rep < REPS; rep++) {
                for (boolean multifd : new boolean[] {false, true}) {
                    for (Kind kind : Kind.values()) {
                        if (kind == Kind.CHANNEL_DIES && !multifd) {
                            continue;           // no multifd channel to lose
                        }
                        for (boolean mid : new boolean[] {false, true}) {
                            String cell = (multifd ? "multifd-4" : "plain") + " | " + kind.label + " | "
                                    + (mid ? "mid-checkpoint" : "idle");
                            int[] tally = table.computeIfAbsent(cell, k -> new int[2]);
                            tally[1]++;
                            try {
                                long ms = runCell(multifd ? mf4 : plain, multifd ? 4 : 0, kind, mid, rep);
                                detection.computeIfAbsent(cell, k -> new ArrayList<>()).add(ms);
                                tally[0]++;
                            } catch (AssertionError | Exception e) {
                                failures.add(cell + " rep " + rep + ": " + e);
                            }
                            assertTrue(n.alive(), "the neighbour's session broke: " + n.error.get());
                        }
                    }
                }
            }
            long committed = n.stop();
            assertTrue(committed >= 5, "the neighbour committed " + committed + " checkpoints during the matrix");
        }
        StringBuilder md = new StringBuilder("| replica | fault | when | passed | failover after (median ms) |\n"
                + "|---|---|---|---|---|\n");
        table.forEach((cell, t) -> {
            List<Long> d = detection.getOrDefault(cell, List.of()).stream().sorted().toList();
            md.append("| ").append(cell).append(" | ").append(t[0]).append('/').append(t[1]).append(" | ")
                    .append(d.isEmpty() ? "—" : d.get(d.size() / 2)).append(" |\n");
        });
        System.out.println(md);
        Files.createDirectories(Path.of("target"));
        Files.writeString(Path.of("target/fault-matrix.md"), md);
        assertTrue(failures.isEmpty(), String.join("\n", failures));
    }

    /** @return ms from the fault's checkpoint start to the failover */
    private static long runCell(SecondaryRig rig, int channels, Kind kind, boolean mid, int rep) throws Exception {
        Fault fault = fault(kind, mid, rep);
        long seed = 1000L * rep + kind.ordinal() * 10 + (mid ? 1 : 0);
        Future<MigrationResult> outcome = rig.next();
        try (GuestMemory mem = SecondaryRig.image(RAM, seed)) {
            ColoPrimary p = rig.startPrimary(rep % 2 == 0 ? Framing.MODERN : Framing.LEGACY, channels, mem,
                    Workloads.random(seed, 1500), ColoPrimary.Options.defaults().withReplyTimeout(Duration.ofSeconds(10)));
            CompletableFuture<Void> faulted;
            long t0;
            try {
                for (int i = 0; i < 2; i++) {
                    ColoCheckpoint cp = p.checkpoint();
                    assertEquals(cp.digest(), rig.commits.get(cp.epoch()).digest(), "clean checkpoint " + cp.epoch());
                }
                p.runGuest();
                t0 = System.nanoTime();
                // a stalled primary blocks in checkpoint() until killed: run it aside
                faulted = CompletableFuture.runAsync(() -> {
                    try {
                        p.checkpoint(fault);
                    } catch (IOException | RuntimeException expected) {
                        // the usual end of a cut checkpoint, or of a stalled one once killed
                    }
                });
                MigrationResult res = SecondaryRig.await(outcome, 15);
                long ms = (System.nanoTime() - t0) / 1_000_000;
                try {
                    assertNotNull(res.colo(), "a COLO replica fails over");
                    String reason = res.colo().failoverReason();
                    assertTrue(reasonFits(kind, reason, fault.channel()), kind + ": reason '" + reason + "'");
                    IncomingMigration s = rig.session.get();
                    assertEquals(IncomingMigration.Phase.FAILED_OVER, s.phase());
                    if (kind == Kind.STALL) {
                        assertTrue(ms >= HEARTBEAT_MS - 50, "a stall fails over after the heartbeat, not at " + ms + " ms");
                        assertTrue(!faulted.isDone(), "the stalled primary is still blocked: nothing was closed by it");
                    }
                    p.kill();
                    faulted.get(10, TimeUnit.SECONDS);
                    FaultReport r = p.lastFault();
                    assertNotNull(r, "fault report");
                    long e = res.colo().epoch();
                    assertTrue(e >= r.minEpoch() && e <= r.maxEpoch(), "epoch " + e + " outside " + r);
                    // checkpoint 3 can only be kept when all of it was sent before the fault (a channel
                    // whose share was already out, say); else the replica keeps 2, the last commit
                    if (!r.complete()) {
                        assertEquals(2, e, "the last committed checkpoint is kept: " + r + " -> " + reason);
                    }
                    String expected = r.digestOf(e);
                    assertEquals(expected, res.memory().fastDigest(), "failed-over image = primary's epoch " + e);
                    assertEquals(expected, res.colo().last().digest(), "last checkpoint digest");
                    System.out.printf("%s multifd %d %s: epoch %d after %d ms (%s)%n", kind, channels,
                            mid ? "mid" : "idle", e, ms, reason);
                    return ms;
                } finally {
                    res.memory().close();
                }
            } finally {
                p.kill();
            }
        }
    }

    /** A COLO session on another replica of the same process, checkpointing all along the matrix. */
    static final class Neighbour {
        final AtomicBoolean stop = new AtomicBoolean();
        final AtomicLong committed = new AtomicLong();
        final java.util.concurrent.atomic.AtomicReference<Throwable> error = new java.util.concurrent.atomic.AtomicReference<>();
        Future<MigrationResult> outcome;
        ColoPrimary primary;
        GuestMemory memory;
        SecondaryRig rig;
        Thread thread;

        static Neighbour start(SecondaryRig rig) throws Exception {
            Neighbour n = new Neighbour();
            n.rig = rig;
            n.outcome = rig.next();
            n.memory = SecondaryRig.image(RAM, 4242);
            n.primary = rig.startPrimary(Framing.MODERN, 4, n.memory, Workloads.random(4242, 800),
                    ColoPrimary.Options.defaults().withReplyTimeout(Duration.ofSeconds(10)));
            n.thread = Thread.ofPlatform().name("neighbour-primary").start(() -> {
                try {
                    while (!n.stop.get()) {
                        n.primary.runGuest();
                        ColoCheckpoint cp = n.primary.checkpoint();
                        if (!cp.digest().equals(rig.commits.get(cp.epoch()).digest())) {
                            throw new AssertionError("neighbour checkpoint " + cp.epoch() + " digest differs");
                        }
                        n.committed.set(cp.epoch());
                        Thread.sleep(100);
                    }
                } catch (Throwable t) {
                    n.error.set(t);
                }
            });
            return n;
        }

        boolean alive() {
            return error.get() == null && !outcome.isComplete();
        }

        /** Stops checkpointing, closes the primary, checks the failed-over image; returns the last epoch. */
        long stop() throws Exception {
            stop.set(true);
            thread.join(20_000);
            assertEquals(null, error.get(), "neighbour");
            long last = committed.get();
            String digest = primary.digest(last);
            primary.close();
            MigrationResult res = SecondaryRig.await(outcome, 15);
            try {
                assertEquals(last, res.colo().epoch());
                assertEquals(digest, res.memory().fastDigest(), "neighbour image after the matrix");
            } finally {
                res.memory().close();
                memory.close();
            }
            return last;
        }
    }
}
