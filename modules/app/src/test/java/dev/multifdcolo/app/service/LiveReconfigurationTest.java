package dev.multifdcolo.app.service;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoCheckpoint;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.Fault;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.colo.WorkerPool;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.logging.Level;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 6's live settings: while a COLO replica is mid-session, an edit of flush-workers,
 * heartbeat-timeout-ms and log-levels applies at once — same replica, same session, a new worker
 * pool (the old one retired once idle), checkpoints still byte-exact — and the new heartbeat is
 * the one that fails a stalled primary over. The metrics endpoint moves to a new port live. Then
 * the drain of SIGTERM refuses new connections.
 */
class LiveReconfigurationTest {
    @TempDir
    Path dir;

    static JsonObject replica(int port, int workers, long heartbeat) {
        return new JsonObject().put("name", "vm1").put("listen", "127.0.0.1:" + port).put("multifd-channels", 4)
                .put("colo", true).put("x-checkpoint-delay", 600).put("heartbeat-timeout-ms", heartbeat)
                .put("flush-workers", workers).put("digest-on-commit", true);
    }

    @Test
    void flushWorkersHeartbeatAndLogLevelsApplyMidSession() throws Exception {
        int port = ServiceRig.freePort();
        JsonObject conf = ServiceRig.config(100, replica(port, 2, 30_000));
        try (ServiceRig rig = new ServiceRig(dir.resolve("service.json"), conf);
             GuestMemory mem = GuestImages.generate(16L << 20, 8, 0.3)) {
            // the metrics endpoint moves live: a new port answers, the old one is closed
            int oldMetrics = rig.service.metricsPort();
            int newMetrics = ServiceRig.freePort();
            conf.put("metrics", new JsonObject().put("host", "127.0.0.1").put("port", newMetrics));
            rig.write(conf);
            ServiceRig.await("the metrics endpoint moved", 5_000, () -> rig.service.metricsPort() == newMetrics);
            assertEquals(200, rig.get(newMetrics, "/metrics", null).statusCode());
            org.junit.jupiter.api.Assertions.assertThrows(java.net.ConnectException.class,
                    () -> rig.get(oldMetrics, "/metrics", null), "the old endpoint is closed");

            Replica r = rig.service.managed().get("vm1").replica();
            Future<MigrationResult> outcome = r.nextMigration();
            WorkerPool before = r.workers();
            assertEquals(2, before.size());
            SenderConfig sc = SenderConfig.builder("127.0.0.1", port).framing(Framing.MODERN).multifd(4)
                    .stallTimeout(Duration.ofSeconds(20)).connectTimeout(Duration.ofSeconds(5)).build();
            ColoPrimary p = ColoPrimary.connect(sc, mem, Workloads.random(8, 2000),
                    ColoPrimary.Options.defaults().withReplyTimeout(Duration.ofSeconds(10)));
            try {
                p.start();
                IncomingMigration session = r.current();
                for (int i = 0; i < 3; i++) {
                    p.runGuest();
                    p.checkpoint();
                }
                rig.write(conf.copy().put("log-levels", new JsonObject().put("dev.multifdcolo.secondary", "DEBUG"))
                        .put("replicas", new io.vertx.core.json.JsonArray().add(replica(port, 4, 400))));
                ServiceRig.await("the live change", 5_000, () -> r.workers() != before);
                assertSame(r, rig.service.managed().get("vm1").replica(), "the replica was not restarted");
                assertEquals(4, r.workers().size());
                assertEquals(400, r.config().coloOptions().heartbeatMs());
                assertEquals(Level.FINE, Logger.getLogger("dev.multifdcolo.secondary").getLevel());
                for (int i = 0; i < 5; i++) {
                    p.runGuest();
                    ColoCheckpoint cp = p.checkpoint();
                    assertEquals(cp.digest(), session.lastCheckpoint().digest(), "checkpoint " + cp.epoch());
                }
                assertSame(session, r.current(), "the same migration went on");
                assertTrue(before.retired(), "the old worker pool retired");
                assertEquals(8, session.epoch());

                // the new heartbeat (400 ms, was 30 s) is the one that notices a stalled primary
                p.runGuest();
                long t0 = System.nanoTime();
                CompletableFuture<Void> stalled = CompletableFuture.runAsync(() -> {
                    try {
                        p.checkpoint(Fault.stall(Fault.Where.BEFORE_REQUEST));
                    } catch (IOException | RuntimeException expected) {
                        // released by kill()
                    }
                });
                MigrationResult res = outcome.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
                long ms = (System.nanoTime() - t0) / 1_000_000;
                assertTrue(res.colo().failoverReason().contains("heartbeat 400 ms"), res.colo().failoverReason());
                assertTrue(ms < 10_000, "failover after " + ms + " ms");
                assertEquals(8, res.colo().epoch());
                assertEquals(p.digest(8), res.memory().fastDigest(), "the image of checkpoint 8");
                p.kill();
                stalled.get(10, TimeUnit.SECONDS);
                // after-failover: refuse (default) also shows in the status
                assertTrue(rig.service.managed().get("vm1").status().getString("refusing").contains("failed over"));

                // SIGTERM's drain: new connections are refused from its start
                rig.service.drain(1_000).toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
                try (Socket s = new Socket()) {
                    s.connect(new InetSocketAddress("127.0.0.1", port));
                    s.setSoTimeout(5_000);
                    // nothing written: the receiver's close arrives as an end of stream, not a reset
                    assertEquals(-1, s.getInputStream().read(), "a connection during shutdown is closed at once");
                }
                ServiceRig.await("the refusal counted", 5_000,
                        () -> r.rejections(dev.multifdcolo.wire.Rule.CONNECTION_LIMIT) == 1);
            } finally {
                p.kill();
                Logger.getLogger("dev.multifdcolo.secondary").setLevel(null);
            }
        }
    }
}
