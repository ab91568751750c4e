package dev.multifdcolo.secondary;

import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.Test;

import java.lang.foreign.ValueLayout;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Scaling by verticle instances (issue 6): a replica deployed with 4 channel verticle instances on
 * 4 event loops spreads a migration's 5 connections (main + 4 multifd) over the loops — Vert.x
 * hands accepted connections to the instances in turn — and the image is still byte-exact.
 */
class EventLoopSpreadTest {
    @Test
    void fiveConnectionsLandOnSeveralEventLoopsAndTheImageIsExact() throws Exception {
        Captures mf4 = Captures.all().stream().filter(c -> c.name().equals("11.1 multifd 4")).findFirst().orElseThrow();
        Vertx vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(4));
        try {
            Replica r = new Replica(mf4.config("127.0.0.1", Replay.freePort()));
            var session = new java.util.concurrent.atomic.AtomicReference<IncomingMigration>();
            r.onSessionStart(session::set);
            r.deploy(vertx, 4).await();
            for (int round = 0; round < 3; round++) {
                var next = r.nextMigration();
                List<String> threads;
                try (Replay replay = new Replay()) {
                    replay.play(r.config().port(), mf4.mainBytes(), mf4.channelBytes(), round, true)
                            .get(20, TimeUnit.SECONDS);
                    MigrationResult res = next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
                    threads = session.get().channelThreads();
                    assertArrayEquals(mf4.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
                    res.memory().close();
                }
                Set<String> distinct = new HashSet<>(threads);
                System.out.println("round " + round + ": channels on " + threads);
                assertEquals(5, threads.size(), "main + 4 multifd channels attached: " + threads);
                assertTrue(distinct.size() >= 3, "5 connections over 4 event loops used only " + distinct);
                assertTrue(distinct.stream().allMatch(t -> t.startsWith("vert.x-eventloop-thread-")), threads.toString());
            }
        } finally {
            vertx.close().await();
        }
    }
}
