package dev.multifdcolo.app.service;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A COLO run (primary emulator, 30 checkpoints, multifd 2) against the service, then: the
 * Prometheus scrape has the replica's series with values that match the run, the control API lists
 * the replica in COLO state, fails it over on request, and writes the failed-over image, which
 * equals the primary's; a Bearer token is enforced when configured.
 */
class MetricsAndControlTest {
    static final String TOKEN = "t0ken-for-tests";
    static final int CHECKPOINTS = 30;

    @TempDir
    Path dir;

    @Test
    void coloRunThenScrapeAndControl() throws Exception {
        int port = ServiceRig.freePort();
        JsonObject replica = new JsonObject().put("name", "vm1").put("listen", "127.0.0.1:" + port)
                .put("multifd-channels", 2).put("colo", true).put("x-checkpoint-delay", 600)
                .put("heartbeat-timeout-ms", 20_000).put("digest-on-commit", true);
        JsonObject conf = ServiceRig.config(0, replica);
        conf.getJsonObject("control").put("token", TOKEN);
        long t0 = System.nanoTime();
        try (ServiceRig rig = new ServiceRig(dir.resolve("service.json"), conf);
             GuestMemory mem = GuestImages.generate(32L << 20, 9, 0.3)) {
            int api = rig.service.controlPort();
            int metrics = rig.service.metricsPort();
            assertEquals(401, rig.get(api, "/replicas", null).statusCode());
            assertEquals(401, rig.get(api, "/replicas", "wrong").statusCode());
            assertEquals(200, rig.get(api, "/health", TOKEN).statusCode());
            assertEquals(200, rig.get(api, "/ready", TOKEN).statusCode());
            assertEquals(404, rig.post(api, "/replicas/vm1/image?dir=" + dir.resolve("none"), TOKEN).statusCode(),
                    "no image held yet");
            assertEquals(409, rig.post(api, "/replicas/vm1/failover", TOKEN).statusCode(), "nothing to fail over");

            SenderConfig sc = SenderConfig.builder("127.0.0.1", port).framing(Framing.MODERN).multifd(2)
                    .stallTimeout(Duration.ofSeconds(20)).connectTimeout(Duration.ofSeconds(5)).build();
            ColoPrimary p = ColoPrimary.connect(sc, mem, Workloads.random(9, 1500), ColoPrimary.Options.defaults());
            try {
                p.start();
                for (int i = 1; i <= CHECKPOINTS; i++) {
                    p.runGuest();
                    p.checkpoint();
                }
                JsonObject st = status(rig, api, "vm1");
                assertEquals("COLO", st.getString("phase"));
                assertEquals(CHECKPOINTS, st.getLong("epoch"));
                assertEquals(CHECKPOINTS, st.getJsonObject("last-checkpoint").getLong("epoch"));
                assertEquals(p.digest(CHECKPOINTS), st.getJsonObject("last-checkpoint").getString("digest"));

                String scrape = rig.get(metrics, "/metrics", null).body();
                assertEquals(1.0, value(scrape, "multifd_colo_replica_state", "phase=\"COLO\",replica=\"vm1\""));
                assertEquals(0.0, value(scrape, "multifd_colo_replica_state", "phase=\"IDLE\",replica=\"vm1\""));
                assertEquals(CHECKPOINTS, value(scrape, "multifd_colo_replica_epoch", "replica=\"vm1\""));

                // manual failover through the API
                HttpResponse<String> fo = rig.post(api, "/replicas/vm1/failover?reason=test", TOKEN);
                assertEquals(200, fo.statusCode(), fo.body());
                JsonObject after = new JsonObject(fo.body());
                assertEquals("IDLE", after.getString("phase"));
                assertEquals("test", after.getString("failover-reason"));
                assertEquals(CHECKPOINTS, after.getLong("epoch"));
            } finally {
                p.close();
            }

            String scrape = rig.get(metrics, "/metrics", null).body();
            System.out.println(scrape.lines().filter(l -> l.contains("multifd_colo") && !l.contains("rule=")
                    && !l.contains("_bucket")).reduce("", (a, b) -> a + b + "\n"));
            assertEquals(1.0, value(scrape, "multifd_colo_replica_state", "phase=\"IDLE\",replica=\"vm1\""));
            assertEquals(CHECKPOINTS, value(scrape, "multifd_colo_replica_epoch", "replica=\"vm1\""));
            assertEquals(CHECKPOINTS, value(scrape, "multifd_colo_checkpoints_total", "replica=\"vm1\""));
            assertEquals(1.0, value(scrape, "multifd_colo_failovers_total", "replica=\"vm1\""));
            assertEquals(1.0, value(scrape, "multifd_colo_migrations_total", "outcome=\"completed\",replica=\"vm1\""));
            assertEquals(0.0, value(scrape, "multifd_colo_rejections_total", "replica=\"vm1\",rule=\"packet-magic\""));
            double main = value(scrape, "multifd_colo_received_bytes_total", "channel=\"main\",replica=\"vm1\"");
            double c0 = value(scrape, "multifd_colo_received_bytes_total", "channel=\"0\",replica=\"vm1\"");
            double c1 = value(scrape, "multifd_colo_received_bytes_total", "channel=\"1\",replica=\"vm1\"");
            assertTrue(main > 0 && c0 > 1_000_000 && c1 > 1_000_000, main + " " + c0 + " " + c1);
            double normal = value(scrape, "multifd_colo_received_pages_total", "replica=\"vm1\",type=\"normal\"");
            double zero = value(scrape, "multifd_colo_received_pages_total", "replica=\"vm1\",type=\"zero\"");
            assertTrue(normal >= (32L << 20) / 4096 * 0.6, "normal pages " + normal);
            assertTrue(zero > 0, "zero pages " + zero);
            assertTrue(value(scrape, "multifd_colo_received_packets_total", "replica=\"vm1\"") > 0);
            assertTrue(value(scrape, "multifd_colo_syncs_total", "replica=\"vm1\"") > CHECKPOINTS);
            for (String t : new String[]{"transfer", "flush", "pause"}) {
                String n = "multifd_colo_checkpoint_" + t + "_seconds";
                assertEquals(CHECKPOINTS, value(scrape, n + "_count", "replica=\"vm1\""), n);
                String q = "multifd_colo_checkpoint_" + t + "_quantile_seconds";
                double p50 = value(scrape, q, "quantile=\"0.5\",replica=\"vm1\"");
                double p99 = value(scrape, q, "quantile=\"0.99\",replica=\"vm1\"");
                assertTrue(p50 > 0 && p50 <= p99 && p99 < 30, n + " p50 " + p50 + " p99 " + p99);
                assertTrue(scrape.contains(n + "_bucket{"), n + " histogram buckets");
            }
            assertEquals(CHECKPOINTS, value(scrape, "multifd_colo_checkpoint_dirty_pages_count", "replica=\"vm1\""));
            assertTrue(value(scrape, "multifd_colo_checkpoint_dirty_pages_sum", "replica=\"vm1\"") > 0);
            double d50 = value(scrape, "multifd_colo_checkpoint_dirty_pages_quantile", "quantile=\"0.5\",replica=\"vm1\"");
            double d99 = value(scrape, "multifd_colo_checkpoint_dirty_pages_quantile", "quantile=\"0.99\",replica=\"vm1\"");
            assertTrue(d50 > 0 && d50 <= d99 && d99 <= 1500 * 1.1, "dirty pages p50 " + d50 + " p99 " + d99);
            // Vert.x and JVM metrics
            assertTrue(scrape.contains("vertx_net_server_"), "Vert.x net server metrics");
            assertTrue(scrape.contains("jvm_memory_used_bytes"), "JVM metrics");

            // every series the shipped Grafana dashboard queries is in the scrape
            String dashboard = java.nio.file.Files.readString(Path.of("../../conf/grafana-dashboard.json"));
            Matcher names = Pattern.compile("\\b((?:multifd_colo|vertx|jvm|process|system)_[a-z0-9_]+)").matcher(dashboard);
            java.util.Set<String> missing = new java.util.TreeSet<>();
            int used = 0;
            while (names.find()) {
                used++;
                // GC pause series exist only once a collection happened
                if (!names.group(1).startsWith("jvm_gc_pause")
                        && !Pattern.compile("(?m)^" + Pattern.quote(names.group(1)) + "[{ ]").matcher(scrape).find()) {
                    missing.add(names.group(1));
                }
            }
            assertTrue(used > 20, "dashboard queries found: " + used);
            assertTrue(missing.isEmpty(), "dashboard series missing from the scrape: " + missing);

            // the held (failed-over) image, written through the API, equals the primary's
            Path out = dir.resolve("image");
            HttpResponse<String> img = rig.post(api, "/replicas/vm1/image?dir=" + out, TOKEN);
            assertEquals(200, img.statusCode(), img.body());
            JsonObject manifest = new JsonObject(img.body());
            assertEquals(CHECKPOINTS, manifest.getJsonObject("colo").getLong("epoch"));
            assertEquals(mem.digest(), manifest.getString("digest"), "written image equals the primary's");

            JsonArray list = new JsonObject(rig.get(api, "/replicas", TOKEN).body()).getJsonArray("replicas");
            assertEquals(1, list.size());
            assertNotNull(list.getJsonObject(0).getJsonObject("image"));
            assertEquals(404, rig.get(api, "/replicas/nope", TOKEN).statusCode());
        }
        System.out.printf("COLO run + scrape + control API: %.1f s%n", (System.nanoTime() - t0) / 1e9);
    }

    @Test
    void controlApiBoundElsewhereNeedsAToken() {
        JsonObject conf = new JsonObject().put("control", new JsonObject().put("host", "0.0.0.0"));
        if (System.getenv(ControlApi.TOKEN_ENV) == null) {
            assertThrows(IllegalArgumentException.class, () -> ControlApi.Settings.from(conf));
        }
        conf.getJsonObject("control").put("token", "x");
        assertEquals("x", ControlApi.Settings.from(conf).token());
        assertThrows(IllegalArgumentException.class, () -> ControlApi.Settings.from(
                new JsonObject().put("control", new JsonObject().put("prot", 1))));
    }

    static JsonObject status(ServiceRig rig, int api, String name) throws Exception {
        HttpResponse<String> r = rig.get(api, "/replicas/" + name, TOKEN);
        assertEquals(200, r.statusCode(), r.body());
        return new JsonObject(r.body());
    }

    /** The value of {@code name{labels}} in a Prometheus text scrape (labels in sorted order). */
    static double value(String scrape, String name, String labels) {
        Map<String, Double> found = new HashMap<>();
        Matcher m = Pattern.compile("(?m)^" + Pattern.quote(name) + "\\{([^}]*)\\} (\\S+)").matcher(scrape);
        while (m.find()) {
            found.put(m.group(1), Double.parseDouble(m.group(2)));
        }
        for (var e : found.entrySet()) {
            if (e.getKey().contains(labels)) {
                return e.getValue();
            }
        }
        throw new AssertionError("no " + name + "{" + labels + "} in the scrape; seen " + found.keySet());
    }
}
