package dev.multifdcolo.qemu;

import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The QMP client against a scripted fake QEMU (no real QEMU needed). */
class QmpProtocolTest {

    @TempDir
    Path dir;

    private static String event(String name, JsonObject data) {
        return new JsonObject().put("event", name).put("data", data)
                .put("timestamp", new JsonObject().put("seconds", 1).put("microseconds", 2)).encode() + "\n";
    }

    private static String reply(JsonObject request, Object value) {
        return new JsonObject().put("return", value).put("id", request.getValue("id")).encode() + "\n";
    }

    @Test
    void matchesAnswersCollectsEventsAndMapsErrors() throws Exception {
        Path socket = dir.resolve("qmp.sock");
        int[] queries = {0};
        try (FakeUnixServer server = new FakeUnixServer(socket, (in, out) -> {
            out.send("{\"QMP\": {\"version\": {\"qemu\": {\"major\": 11, \"minor\": 1, \"micro\": 3}}, \"capabilities\": []}}\n");
            String line;
            while ((line = in.readLine()) != null) {
                JsonObject req = new JsonObject(line);
                JsonObject args = req.getJsonObject("arguments", new JsonObject());
                switch (req.getString("execute")) {
                    case "qmp_capabilities" -> out.send(reply(req, new JsonObject()));
                    case "migrate-set-capabilities" -> {
                        assertEquals("multifd", args.getJsonArray("capabilities").getJsonObject(0).getString("capability"));
                        // an event sneaking in before the answer
                        out.send(event("MIGRATION", new JsonObject().put("status", "setup")));
                        out.send(reply(req, new JsonObject()));
                    }
                    case "human-monitor-command" -> out.send(reply(req, "VM status: " + args.getString("command-line")));
                    case "query-migrate" -> {
                        JsonObject info = ++queries[0] < 3 ? new JsonObject().put("status", "active")
                                : new JsonObject().put("status", "failed").put("error-desc", "boom");
                        out.send(reply(req, info));
                    }
                    case "quit" -> {
                        out.send(event("SHUTDOWN", new JsonObject()));
                        return; // QEMU exits without answering
                    }
                    default -> out.send(new JsonObject().put("id", req.getValue("id")).put("error",
                            new JsonObject().put("class", "CommandNotFound").put("desc", "The command "
                                    + req.getString("execute") + " has not been found")).encode() + "\n");
                }
            }
        }); Qmp qmp = Qmp.connect(socket, dir, Duration.ofSeconds(5))) {
            assertEquals(11, qmp.greeting().getJsonObject("QMP").getJsonObject("version")
                    .getJsonObject("qemu").getInteger("major"));
            qmp.setCapabilities(Map.of("multifd", true));
            assertEquals("setup", qmp.awaitEvent("MIGRATION", Duration.ofSeconds(1)).getJsonObject("data").getString("status"));
            assertTrue(qmp.pollEvent("MIGRATION").isEmpty(), "an event is consumed once");
            assertEquals(1, qmp.events().size());

            assertEquals("VM status: info status", qmp.hmp("info status"));
            QmpException e = assertThrows(QmpException.class, () -> qmp.execute("frobnicate"));
            assertEquals("CommandNotFound", e.errorClass());
            assertEquals("frobnicate", e.command());
            assertThrows(QemuTimeoutException.class, () -> qmp.awaitEvent("STOP", Duration.ofMillis(50)));

            MigrationException failed = assertThrows(MigrationException.class,
                    () -> qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofSeconds(5)));
            assertEquals("failed", failed.status());
            assertEquals("boom", failed.errorDesc());
            assertFalse(failed.timedOut());
            assertTrue(failed.getMessage().contains("boom"), failed.getMessage());

            qmp.quit();
            server.awaitDone();
            assertEquals("SHUTDOWN", qmp.awaitEvent("SHUTDOWN", Duration.ofSeconds(1)).getString("event"));
            // once QEMU is gone, commands fail fast instead of waiting for the timeout
            long t0 = System.nanoTime();
            while (qmp.isConnected() && System.nanoTime() - t0 < 2_000_000_000L) {
                Thread.onSpinWait();
            }
            assertFalse(qmp.isConnected());
            assertThrows(UncheckedIOException.class, qmp::queryStatus);
        }
    }

    @Test
    void migrationTimeoutCarriesTheLastStatus() throws Exception {
        Path socket = dir.resolve("qmp2.sock");
        try (FakeUnixServer server = new FakeUnixServer(socket, (in, out) -> {
            out.send("{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n");
            String line;
            while ((line = in.readLine()) != null) {
                JsonObject req = new JsonObject(line);
                out.send(reply(req, "query-migrate".equals(req.getString("execute"))
                        ? new JsonObject().put("status", "active") : new JsonObject()));
            }
        })) {
            Qmp qmp = Qmp.connect(socket, dir, Duration.ofSeconds(5));
            MigrationException slow = assertThrows(MigrationException.class,
                    () -> qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofMillis(100)));
            assertTrue(slow.timedOut());
            assertEquals("active", slow.status());
            assertTrue(slow.getMessage().contains("'active'"), slow.getMessage());
            qmp.close();
            server.awaitDone();
        }
    }
}
