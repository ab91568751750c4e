package dev.multifdcolo.app.service;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What SIGTERM runs ({@code ServiceVerticle.drain}): a replica in COLO state fails over to its
 * last committed checkpoint, its image is written to images-dir before drain completes, and the
 * service reports not ready.
 */
class GracefulShutdownTest {
    @TempDir
    Path dir;

    @Test
    void drainFailsColoOverAndWritesItsImage() throws Exception {
        int port = ServiceRig.freePort();
        JsonObject replica = new JsonObject().put("name", "vm1").put("listen", "127.0.0.1:" + port)
                .put("multifd-channels", 2).put("colo", true).put("x-checkpoint-delay", 600)
                .put("heartbeat-timeout-ms", 20_000);
        Path images = dir.resolve("images");
        JsonObject conf = ServiceRig.config(0, replica).put("images-dir", images.toString());
        try (ServiceRig rig = new ServiceRig(dir.resolve("service.json"), conf);
             GuestMemory mem = GuestImages.generate(16L << 20, 3, 0.3)) {
            Future<MigrationResult> outcome = rig.service.managed().get("vm1").replica().nextMigration();
            SenderConfig sc = SenderConfig.builder("127.0.0.1", port).framing(Framing.MODERN).multifd(2)
                    .stallTimeout(Duration.ofSeconds(20)).connectTimeout(Duration.ofSeconds(5)).build();
            ColoPrimary p = ColoPrimary.connect(sc, mem, Workloads.random(3, 1000), ColoPrimary.Options.defaults());
            try {
                p.start();
                for (int i = 1; i <= 5; i++) {
                    p.runGuest();
                    p.checkpoint();
                }
                rig.service.drain(5_000).toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
                assertFalse(rig.service.ready());
                MigrationResult res = outcome.toCompletionStage().toCompletableFuture().get(1, TimeUnit.SECONDS);
                assertEquals(5, res.colo().epoch());
                assertEquals("service shutting down", res.colo().failoverReason());
                Path manifest = images.resolve("vm1").resolve("manifest.json");
                assertTrue(Files.exists(manifest), "image written before drain completed");
                JsonObject m = new JsonObject(Files.readString(manifest));
                assertEquals(5, m.getJsonObject("colo").getLong("epoch"));
                assertEquals(mem.digest(), m.getString("digest"), "image = the primary's at epoch 5");
            } finally {
                p.close();
            }
        }
    }
}
