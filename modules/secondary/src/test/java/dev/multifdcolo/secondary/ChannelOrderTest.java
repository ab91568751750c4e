package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.secondary.RejectionNetworkTest.Source;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static dev.multifdcolo.secondary.RejectionNetworkTest.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/**
 * Nothing orders a migration's sockets: a multifd channel's first RAM packet can be read before
 * the main channel's RAMBlock list (and, file-backed, before the image files exist: they are made
 * on a worker while the main channel waits). Such a packet waits for the list instead of being
 * refused as an unknown RAMBlock. Here every multifd byte is delivered before the first main byte.
 */
class ChannelOrderTest {
    static Vertx vertx;

    @TempDir
    Path dir;

    @BeforeAll
    static void start() {
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(4));
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void multifdPacketsBeforeTheRamBlockListWaitForIt(boolean fileBacked) throws Exception {
        Captures mf2 = RejectionNetworkTest.MF2;
        ReplicaConfig cfg = RejectionNetworkTest.config(mf2);
        if (fileBacked) {
            cfg = cfg.withBacking(Backing.files(dir.resolve("images")));
        }
        Replica r = new Replica(cfg);
        r.deploy(vertx, 2).await();
        var next = r.nextMigration();
        List<byte[]> ch = mf2.channelBytes();
        long channelBytes = ch.stream().mapToLong(b -> b.length).sum();
        try (Source s = new Source(cfg.port())) {
            for (byte[] c : ch) {
                s.stream(c);
            }
            // every multifd byte is read (up to the packets that wait) before the main channel connects
            await(() -> r.current() != null && r.current().stats().bytes.sum() >= Math.min(channelBytes, 64 * 1024),
                    "the multifd channels' bytes");
            s.stream(mf2.mainBytes());
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
            assertArrayEquals(mf2.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            res.memory().close();
        }
    }
}
