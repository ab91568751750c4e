package dev.multifdcolo.app.colo;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoCheckpoint;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.Fault;
import dev.multifdcolo.primary.FaultReport;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code loaded-before-flush}: VMSTATE_LOADED goes out when the checkpoint is complete and the
 * flush follows. Every checkpoint still commits with the primary's digest (the next one's RAM
 * waits for the flush), and a primary cut right after reading VMSTATE_RECEIVED — the flush may
 * be running, LOADED may be on the wire — leaves the replica at that checkpoint, which the
 * primary counts as loaded.
 */
class ColoLoadedBeforeFlushTest {
    static final long RAM = 16L << 20;

    static Checkpoint committed(SecondaryRig rig, long epoch) throws InterruptedException {
        long end = System.nanoTime() + 10_000_000_000L;
        Checkpoint cp;
        while ((cp = rig.commits.get(epoch)) == null) {
            if (System.nanoTime() > end) {
                throw new AssertionError("checkpoint " + epoch + " never committed");
            }
            Thread.sleep(1);
        }
        return cp;
    }

    @ParameterizedTest(name = "multifd {0}")
    @ValueSource(ints = {0, 4})
    void everyCheckpointCommitsWithThePrimarysDigestAndAFailoverInTheFlushKeepsIt(int channels) throws Exception {
        try (SecondaryRig rig = new SecondaryRig(channels, 10_000, Compression.NONE,
                c -> c.withColo(c.coloOptions().withLoadedBeforeFlush(true)))) {
            Future<MigrationResult> outcome = rig.next();
            try (GuestMemory mem = SecondaryRig.image(RAM, 21)) {
                ColoPrimary p = rig.startPrimary(channels > 0 ? Framing.MODERN : Framing.LEGACY, channels, mem,
                        Workloads.random(21, 3000), ColoPrimary.Options.defaults().withReplyTimeout(Duration.ofSeconds(10)));
                try {
                    for (int i = 1; i <= 200; i++) {
                        p.runGuest();
                        ColoCheckpoint cp = p.checkpoint();
                        Checkpoint ours = committed(rig, cp.epoch());
                        assertEquals(cp.digest(), ours.digest(), "checkpoint " + cp.epoch());
                        // the pause we report ends at LOADED, before the flush it no longer contains
                        assertTrue(ours.pauseNanos() > 0, "pause of checkpoint " + cp.epoch());
                    }
                    p.runGuest();
                    try {
                        p.checkpoint(Fault.cut(Fault.Where.DURING_FLUSH));
                    } catch (IOException expected) {
                        // cut after VMSTATE_RECEIVED
                    }
                    FaultReport r = p.lastFault();
                    assertNotNull(r);
                    MigrationResult res = SecondaryRig.await(outcome, 10);
                    try {
                        assertEquals(201, r.epoch());
                        assertEquals(201, res.colo().epoch(), "the checkpoint whose LOADED may have gone out is kept: "
                                + res.colo().failoverReason());
                        assertEquals(r.digestOf(201), res.memory().fastDigest());
                    } finally {
                        res.memory().close();
                    }
                } finally {
                    p.kill();
                }
            }
        }
    }
}
