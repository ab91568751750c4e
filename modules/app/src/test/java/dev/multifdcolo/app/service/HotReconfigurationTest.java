package dev.multifdcolo.app.service;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.DirtyPages;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.MigrationSender;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The service follows its config file without a restart: while replica "a" is in the middle of a
 * migration, an edit adds "b" (listening within a scan period), removes the idle "c" (stopped at
 * once) and removes "a" itself (stopped only once its migration ended, which still completes
 * byte-exact). An invalid edit is rejected whole and the running configuration stays.
 */
class HotReconfigurationTest {
    @TempDir
    Path dir;

    static JsonObject replica(String name, int port, int multifd) {
        return new JsonObject().put("name", name).put("listen", "127.0.0.1:" + port).put("multifd-channels", multifd);
    }

    @Test
    void addAndRemoveWhileAnotherMigrates_thenRejectInvalidEdit() throws Exception {
        int pa = ServiceRig.freePort();
        int pb = ServiceRig.freePort();
        int pc = ServiceRig.freePort();
        Path images = dir.resolve("images");
        JsonObject first = ServiceRig.config(200, replica("a", pa, 2), replica("c", pc, 0))
                .put("images-dir", images.toString());
        try (ServiceRig rig = new ServiceRig(dir.resolve("service.json"), first);
             GuestMemory mem = GuestImages.generate(32L << 20, 5, 0.3)) {
            assertTrue(rig.service.ready());
            assertTrue(listening(pc));
            assertFalse(listening(pb));
            Future<MigrationResult> outcome = rig.service.managed().get("a").replica().nextMigration();

            SenderConfig cfg = SenderConfig.builder("127.0.0.1", pa).framing(Framing.MODERN).multifd(2)
                    .stallTimeout(Duration.ofSeconds(20)).connectTimeout(Duration.ofSeconds(5)).build();
            try (MigrationSender sender = MigrationSender.connect(cfg, mem)) {
                sender.setup();
                // first half of the pages: "a" is mid-migration
                sender.iterate(DirtyPages.all(mem));
                ServiceRig.await("a migrating", 5000, () -> rig.service.managed().get("a").replica().current() != null);

                // edit: add b, remove a (migrating) and c (idle)
                rig.write(ServiceRig.config(200, replica("b", pb, 4)).put("images-dir", images.toString()));
                ServiceRig.await("b listening", 10_000, () -> {
                    ManagedReplica b = rig.service.managed().get("b");
                    return b != null && b.listening();
                });
                assertTrue(listening(pb), "b accepts connections");
                ServiceRig.await("c stopped", 10_000, () -> !rig.service.managed().containsKey("c"));
                assertFalse(listening(pc), "c no longer listens");
                ManagedReplica a = rig.service.managed().get("a");
                assertNotNull(a, "a is kept while its migration runs");
                assertTrue(a.stopping());
                assertFalse(a.replica().current().finished());

                // the migration goes on and completes on the removed replica
                sender.iterate(DirtyPages.all(mem));
                sender.complete(DirtyPages.none());
                sender.finish();
            }
            MigrationResult res = outcome.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
            assertEquals("a", res.replica());
            ServiceRig.await("a stopped", 10_000, () -> !rig.service.managed().containsKey("a"));
            Path manifest = images.resolve("a").resolve("manifest.json");
            ServiceRig.await("a's image written", 10_000, () -> Files.exists(manifest));
            JsonObject m = new JsonObject(Files.readString(manifest));
            assertEquals(mem.digest(), m.getString("digest"), "received image is byte-exact");
            assertFalse(listening(pa), "a no longer listens");

            // invalid edit: b's new settings and a duplicate port → rejected whole
            rig.write(ServiceRig.config(200, replica("b", pb, 4).put("multifd-chanels", 2), replica("d", pb, 0)));
            ServiceRig.await("rejection", 10_000, () -> rig.service.lastError() != null);
            assertTrue(rig.service.lastError().contains("multifd-chanels"), rig.service.lastError());
            Thread.sleep(500);
            assertEquals(java.util.Set.of("b"), rig.service.managed().keySet());
            assertEquals(4, rig.service.managed().get("b").config().multifdChannels());
            assertTrue(listening(pb));
            assertTrue(rig.service.ready());

            // a valid edit afterwards is applied again
            rig.write(ServiceRig.config(200, replica("b", pb, 4), replica("c", pc, 0)));
            ServiceRig.await("c back", 10_000, () -> {
                ManagedReplica c = rig.service.managed().get("c");
                return c != null && c.listening();
            });
            assertEquals(null, rig.service.lastError());
            assertTrue(listening(pc));
        }
    }

    @Test
    void invalidFirstConfigFailsStart() throws Exception {
        JsonObject bad = ServiceRig.config(0, replica("x", 1, 0), replica("x", 2, 0));
        Exception e = assertThrows(Exception.class, () -> new ServiceRig(dir.resolve("bad.json"), bad).close());
        assertTrue(String.valueOf(e.getMessage()).contains("used twice"), e.toString());
    }

    static boolean listening(int port) {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 1000);
            return true;
        } catch (ConnectException e) {
            return false;
        } catch (java.io.IOException e) {
            return false;
        }
    }
}
