package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.RejectionColoTest.Primary;
import dev.multifdcolo.secondary.RejectionNetworkTest.Source;
import dev.multifdcolo.secondary.RejectionRig.Rejects;
import dev.multifdcolo.wire.ColoMessage;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.multifdcolo.secondary.RejectionNetworkTest.await;
import static dev.multifdcolo.secondary.RejectionNetworkTest.receivesByteExact;
import static dev.multifdcolo.secondary.RejectionNetworkTest.rejected;
import static dev.multifdcolo.secondary.RejectionNetworkTest.says;
import static dev.multifdcolo.secondary.StreamBytes.hello;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 7's guards against slow, silent and abusive peers ({@link ReplicaConfig.Guards}): each
 * one ends what it must (a connection, a session, or a COLO session by failover) with its named
 * rule, and the replica still receives byte-exact afterwards.
 */
class RejectionLimitsTest {
    static Vertx vertx;
    static final Captures PLAIN72 = RejectionNetworkTest.PLAIN72;
    static final Captures MF2 = RejectionNetworkTest.MF2;

    @BeforeAll
    static void start() {
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(4));
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
    }

    static Replica deploy(ReplicaConfig cfg) {
        Replica r = new Replica(cfg);
        r.deploy(vertx, 2).await();
        return r;
    }

    static ReplicaConfig guarded(Captures c, ReplicaConfig.Guards g) {
        return RejectionNetworkTest.config(c).withGuards(g);
    }

    static long openFds() {
        String[] fds = new File("/proc/self/fd").list();
        return fds == null ? -1 : fds.length;
    }

    @Test
    @Rejects(Rule.TIMEOUT)
    void aConnectionThatNeverSaysWhatItIsIsDroppedAtTheSetupTimeout() throws Exception {
        Replica r = deploy(guarded(MF2, ReplicaConfig.Guards.DEFAULT.withSetupTimeout(300)));
        try (Source s = new Source(r.config().port())) {
            Socket quiet = s.connect();
            s.send(quiet, new byte[]{'Q', 'E'});                      // 2 of the 4 bytes that classify it
            await(() -> r.rejections(Rule.TIMEOUT) == 1, "the silent connection dropped");
            assertEquals(-1, quiet.getInputStream().read(), "the receiver closed it");
        }
        assertNull(r.current(), "it never started a session");
        await(() -> r.openConnections() == 0, "its slot given back");
        receivesByteExact(r, MF2, 11);
    }

    @Test
    @Rejects(Rule.TIMEOUT)
    void aMigrationWhoseChannelsNeverAllConnectFailsAtTheSetupTimeout() throws Exception {
        Replica r = deploy(guarded(MF2, ReplicaConfig.Guards.DEFAULT.withSetupTimeout(500)));
        List<byte[]> ch = MF2.channelBytes();
        try (Source s = new Source(r.config().port())) {
            // main and channel 0, channel 1 never comes
            var next = r.nextMigration();
            Socket main = s.connect();
            s.send(main, MF2.mainBytes());
            s.send(s.connect(), ch.get(0));
            says(rejected(next, Rule.TIMEOUT), "channel-setup-timeout-ms", "main channel present", "[1] not bound");

            // channels that say hello and wait, but no main channel ever
            next = r.nextMigration();
            s.send(s.connect(), ch.get(0));
            s.send(s.connect(), ch.get(1));
            says(rejected(next, Rule.TIMEOUT), "no main channel", "all bound");
        }
        receivesByteExact(r, MF2, 12);
    }

    @Test
    @Rejects(Rule.TIMEOUT)
    void aSourceTricklingOneByteAtATimeIsDroppedByTheMinimumRate() throws Exception {
        Replica r = deploy(guarded(PLAIN72, ReplicaConfig.Guards.DEFAULT.withStall(500, 1024)));
        var next = r.nextMigration();
        byte[] main = PLAIN72.mainBytes();
        try (Source s = new Source(r.config().port())) {
            Socket trickle = s.connect();
            Thread t = Thread.ofVirtual().start(() -> {
                for (int i = 0; i < 100; i++) {              // 20 bytes/s for at most 5 s
                    s.send(trickle, main, i, i + 1);
                    try {
                        Thread.sleep(50);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            });
            says(rejected(next, Rule.TIMEOUT), "below the minimum of 1024 bytes/s", "stall-timeout-ms");
            t.interrupt();
        }
        receivesByteExact(r, PLAIN72, 13);
    }

    @Test
    @Rejects(Rule.CONNECTION_LIMIT)
    void aThousandConnectionsAreCappedAndDroppedAndFileDescriptorsComeBack() throws Exception {
        Replica r = deploy(guarded(MF2, ReplicaConfig.Guards.DEFAULT.withSetupTimeout(1000).withMaxConnections(64)));
        long fdsBefore = openFds();
        List<Socket> flood = new ArrayList<>();
        try {
            for (int i = 0; i < 1000; i++) {
                Socket so = new Socket();
                so.connect(new InetSocketAddress("127.0.0.1", r.config().port()));
                flood.add(so);
                if (i % 50 == 0) {
                    assertTrue(r.openConnections() <= 64, "never more than max-connections admitted: " + r.openConnections());
                }
            }
            // each one is either refused at once (over the limit) or admitted and dropped at the setup
            // timeout (it never sends a byte); slots freed by timeouts admit later ones
            await(() -> r.rejections(Rule.CONNECTION_LIMIT) + r.rejections(Rule.TIMEOUT) == 1000, "all 1000 ended");
            assertTrue(r.rejections(Rule.CONNECTION_LIMIT) >= 500, "refused at once: " + r.rejections(Rule.CONNECTION_LIMIT));
            assertTrue(r.rejections(Rule.TIMEOUT) >= 64, "timed out: " + r.rejections(Rule.TIMEOUT));
            await(() -> r.openConnections() == 0, "every slot given back");
            for (Socket so : flood) {
                so.setSoTimeout(5000);
                assertEquals(-1, so.getInputStream().read(), "the receiver closed every connection");
            }
        } finally {
            for (Socket so : flood) {
                so.close();
            }
        }
        long fdsAfter = openFds();
        assertTrue(fdsAfter <= fdsBefore + 16, "file descriptors: " + fdsBefore + " before, " + fdsAfter + " after");
        assertNull(r.current());
        receivesByteExact(r, MF2, 14);
    }

    @Test
    @Rejects(Rule.CHANNEL_EXTRA)
    void aConnectionBeyondTheMigrationsChannelsIsTurnedAwayAndTheMigrationGoesOn() throws Exception {
        Replica r = deploy(RejectionNetworkTest.config(MF2));
        var next = r.nextMigration();
        byte[] main = MF2.mainBytes();
        List<byte[]> ch = MF2.channelBytes();
        try (Source s = new Source(r.config().port())) {
            Socket m = s.connect();
            s.send(m, main, 0, 100);
            await(() -> r.current() != null, "the session");
            long expected = 100 + ch.get(0).length + ch.get(1).length;
            for (byte[] c : ch) {
                s.stream(c);
            }
            await(() -> r.current().stats().bytes.sum() >= expected, "both channels attached");
            s.stream(hello(0));                                        // a third multifd channel
            await(() -> r.rejections(Rule.CHANNEL_EXTRA) == 1, "the extra channel refused");
            s.send(m, main, 100, main.length).shut(m);
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(10, java.util.concurrent.TimeUnit.SECONDS);
            res.memory().close();
        }
        assertEquals(1, r.completed());
        assertEquals(0, r.failed());
    }

    // ------------------------------------------------------------------ COLO

    @Test
    @Rejects(Rule.TIMEOUT)
    void aCheckpointTrickledInFailsOverAtTheCheckpointTimeoutKeepingTheImage() throws Exception {
        ReplicaConfig cfg = Primary.config(10_000, 1 << 20)
                .withGuards(ReplicaConfig.Guards.DEFAULT.withCheckpointTimeout(400));
        try (Primary p = Primary.start(cfg, vertx)) {
            p.checkpointCommitted();
            byte[] cp = RejectionColoTest.validCheckpoint();
            p.send(Arrays.copyOf(cp, 4));
            p.expect(ColoMessage.CHECKPOINT_REPLY);
            Thread t = Thread.ofVirtual().start(() -> {
                try {
                    for (int i = 4; i < cp.length; i++) {           // bytes keep coming: the heartbeat stays happy
                        p.send(Arrays.copyOfRange(cp, i, i + 1));
                        Thread.sleep(50);
                    }
                } catch (Exception e) {
                    // the replica closed the connection: the failover
                }
            });
            MigrationResult res = p.failedOver(Rule.TIMEOUT, 1);
            t.interrupt();
            assertTrue(res.colo().failoverReason().contains("checkpoint-timeout-ms"), res.colo().failoverReason());
            RejectionColoTest.keeps(res, RejectionColoTest.image(true));
        }
    }

    static MigrationResult failedOver(Primary p, long epoch) throws Exception {
        MigrationResult res = p.outcome().toCompletionStage().toCompletableFuture().get(10, java.util.concurrent.TimeUnit.SECONDS);
        assertEquals(epoch, res.colo().epoch());
        assertTrue(res.colo().failoverReason().contains("closed the main channel"), res.colo().failoverReason());
        return res;
    }

    @Test
    @Rejects(Rule.REPLICA_FAILED_OVER)
    void aReplicaThatFailedOverRefusesTheNextMigrationUntilReset() throws Exception {
        Replica r = Primary.deployed(Primary.config(10_000, 1 << 20), vertx);
        MigrationResult first;
        try (Primary p = Primary.start(r)) {
            p.checkpointCommitted();
            p.main().close();                                          // the primary dies
            first = failedOver(p, 1);
        }
        assertTrue(r.refusing().contains("failed over at checkpoint 1"), r.refusing());
        try (Source s = new Source(r.config().port())) {
            s.stream(Captures.load("qemu-7.2/colo_plain_0.bin"));
            await(() -> r.rejections(Rule.REPLICA_FAILED_OVER) == 1, "the new migration refused");
        }
        RejectionColoTest.keeps(first, RejectionColoTest.image(true));
        assertTrue(r.reset());
        try (Primary p = Primary.start(r)) {
            p.checkpointCommitted();
            assertEquals(1, r.current().epoch(), "after the reset a new migration is accepted");
        }
    }

    @Test
    void afterFailoverAcceptWithABackingDirIsRefusedAtConfigTime() {
        var j = new io.vertx.core.json.JsonObject().put("name", "vm1").put("colo", true).put("backing-dir", "/tmp/x")
                .put("after-failover", "accept");
        var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> ReplicaConfig.fromJson(j));
        assertTrue(e.getMessage().contains("would truncate the failed-over image's files"), e.getMessage());
        assertTrue(ReplicaConfig.fromJson(j.put("after-failover", "refuse")).colo());
        var bad = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> ReplicaConfig.fromJson(j.copy().put("after-failover", "maybe")));
        assertTrue(bad.getMessage().contains("after-failover must be refuse or accept"), bad.getMessage());
    }

    @Test
    void withAfterFailoverAcceptTheNextMigrationGetsAFreshImageAndTheOldOneStays() throws Exception {
        ReplicaConfig cfg = Primary.config(10_000, 1 << 20)
                .withGuards(ReplicaConfig.Guards.DEFAULT.withAcceptAfterFailover(true));
        Replica r = Primary.deployed(cfg, vertx);
        MigrationResult first;
        try (Primary p = Primary.start(r)) {
            p.checkpointCommitted();
            p.main().close();
            first = failedOver(p, 1);
        }
        assertNull(r.refusing());
        try (Primary p = Primary.start(r)) {
            assertEquals(0, r.current().epoch(), "a new session from its own precopy");
            assertNotSame(first.memory(), r.current().memory(), "never written into the failed-over image");
            p.checkpointCommitted();
        }
        RejectionColoTest.keeps(first, RejectionColoTest.image(true));
    }
}
