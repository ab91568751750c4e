package dev.multifdcolo.secondary;

import dev.multifdcolo.wire.Rule;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The receiver on real sockets and event loops: captures replayed over TCP arrive byte-exact. */
class ReceiverNetworkTest {
    static Vertx vertx;

    @BeforeAll
    static void start() {
        // blocked-thread warnings would mean a decoder or barrier blocks an event loop. 500 ms: at 200
        // it tripped on all event loops at once (220-290 ms) with the 2-core machine at load 4,
        // i.e. starved threads, not a blocking decoder (that one spins for seconds)
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(4).setBlockedThreadCheckInterval(100)
                .setMaxEventLoopExecuteTime(500).setMaxEventLoopExecuteTimeUnit(TimeUnit.MILLISECONDS));
        BlockedThreadWatch.install();
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        BlockedThreadWatch.assertNone();
    }

    static Replica deploy(ReplicaConfig cfg, int instances) {
        Replica r = new Replica(cfg);
        vertx.deployVerticle(() -> new ChannelVerticle(r), new DeploymentOptions().setInstances(instances)).await();
        return r;
    }

    static List<Captures> captures() {
        return Captures.all();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("captures")
    void captureOverTcp(Captures c) throws Exception {
        int port = Replay.freePort();
        Replica r = deploy(c.config("127.0.0.1", port), 4);
        var next = r.nextMigration();
        try (Replay replay = new Replay()) {
            replay.play(port, c.mainBytes(), c.channelBytes(), 42, true).get(20, TimeUnit.SECONDS);
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
            assertArrayEquals(c.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            assertEquals("none", res.machine());
            assertTrue(res.vmdesc().contains("globalstate"));
            res.memory().close();
        }
        assertEquals(1, r.completed());
    }

    /** With a backing directory the guest image is a memory-mapped file per RAMBlock. */
    @Test
    void fileBackedImage(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        Captures c = Captures.all().get(6);      // 11.1 multifd 4
        int port = Replay.freePort();
        Replica r = deploy(c.config("127.0.0.1", port).withBacking(dev.multifdcolo.memory.Backing.files(dir)), 2);
        var next = r.nextMigration();
        try (Replay replay = new Replay()) {
            replay.play(port, c.mainBytes(), c.channelBytes(), 5, true).get(20, TimeUnit.SECONDS);
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
            res.memory().block("ram").guest().force();
            assertArrayEquals(c.expectedRam(), java.nio.file.Files.readAllBytes(dir.resolve("ram.img")),
                    "the file holds the image");
            res.memory().close();
        }
    }

    @Test
    void garbageConnectionIsRejectedWithoutDisturbingTheReplica() throws Exception {
        Captures c = Captures.all().get(1);
        int port = Replay.freePort();
        Replica r = deploy(c.config("127.0.0.1", port), 2);
        try (Replay junk = new Replay()) {
            junk.play(port, "GET / HTTP/1.0\r\n\r\n".getBytes(), List.of(), 1, false).get(5, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (r.rejections(Rule.CHANNEL_MAGIC) == 0 && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertEquals(1, r.rejections(Rule.CHANNEL_MAGIC));
        }
        var next = r.nextMigration();
        try (Replay replay = new Replay()) {
            replay.play(port, c.mainBytes(), c.channelBytes(), 7, true).get(20, TimeUnit.SECONDS);
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
            assertArrayEquals(c.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            res.memory().close();
        }
    }

    @Test
    void wrongFlushModeIsNamedNotHung() throws Exception {
        Captures legacy = Captures.all().get(1);   // 7.2, multifd 2
        int port = Replay.freePort();
        Replica r = deploy(legacy.config("127.0.0.1", port).withFlushMode(dev.multifdcolo.secondary.stream.FlushMode.MODERN), 2);
        var next = r.nextMigration();
        try (Replay replay = new Replay()) {
            replay.play(port, legacy.mainBytes(), legacy.channelBytes(), 3, true);
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS));
            MigrationFailedException m = assertInstanceOf(MigrationFailedException.class, e.getCause());
            assertEquals(Rule.SYNC_PROTOCOL, m.rule());
            assertTrue(m.getMessage().contains("legacy"), m.getMessage());
        }
    }
}
