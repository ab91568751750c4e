package dev.multifdcolo.app.service;

import dev.multifdcolo.qemu.TestCerts;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.InputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A TLS replica in the service: its tls keys in the config file, a refused handshake counted in
 * {@code multifd_colo_rejections_total{rule="tls-handshake"}} while the replica keeps listening,
 * and TLS files that are missing or do not load reject the whole file with the replica named.
 */
class TlsServiceTest {
    @TempDir
    Path dir;

    JsonObject tlsReplica(String name, int port, Path cert) {
        Path s = dir.resolve("server");
        return new JsonObject().put("name", name).put("listen", "127.0.0.1:" + port).put("multifd-channels", 2)
                .put("tls", new JsonObject().put("cert", cert.toString()).put("key", s.resolve("server-key.pem").toString())
                        .put("ca", s.resolve("ca-cert.pem").toString()).put("client-auth", "required"));
    }

    @Test
    void tlsReplicaCountsRefusedHandshakesAndBadFilesAreRejected() throws Exception {
        Path s = TestCerts.serverDir(dir.resolve("server"));
        int pt = ServiceRig.freePort();
        int pu = ServiceRig.freePort();
        JsonObject good = ServiceRig.config(200, tlsReplica("t", pt, s.resolve("server-cert.pem")));
        try (ServiceRig rig = new ServiceRig(dir.resolve("service.json"), good)) {
            assertTrue(rig.service.ready());
            // a client that does not speak TLS (a plain QEVM stream)
            try (Socket plain = new Socket("127.0.0.1", pt)) {
                plain.getOutputStream().write("QEVM\0\0\0\3".getBytes(StandardCharsets.ISO_8859_1));
                plain.setSoTimeout(10_000);
                InputStream in = plain.getInputStream();
                try {
                    while (in.read() >= 0) {
                        // until the service closes it
                    }
                } catch (java.io.IOException closed) {
                    // reset: closed too
                }
            }
            ServiceRig.await("the refusal counted", 10_000, () -> {
                try {
                    return MetricsAndControlTest.value(rig.get(rig.service.metricsPort(), "/metrics", null).body(),
                            "multifd_colo_rejections_total", "replica=\"t\",rule=\"tls-handshake\"") == 1.0;
                } catch (Exception e) {
                    return false;
                }
            });
            assertTrue(HotReconfigurationTest.listening(pt), "the replica keeps listening");
            JsonObject status = new JsonObject(rig.get(rig.service.controlPort(), "/replicas/t", null).body());
            assertEquals("required", status.getJsonObject("tls").getString("client-auth"), status.encode());

            // a replica whose certificate file is missing: the whole edit is rejected, t untouched
            rig.write(ServiceRig.config(200, tlsReplica("t", pt, s.resolve("server-cert.pem")),
                    tlsReplica("u", pu, dir.resolve("missing-cert.pem"))));
            ServiceRig.await("rejection", 10_000, () -> rig.service.lastError() != null);
            assertTrue(rig.service.lastError().contains("replica u: tls: cert file " + dir.resolve("missing-cert.pem")
                    + " does not exist"), rig.service.lastError());
            assertEquals(Set.of("t"), rig.service.managed().keySet());

            // a file that is there but is no certificate
            Path garbage = Files.writeString(dir.resolve("garbage.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
            rig.write(ServiceRig.config(200, tlsReplica("t", pt, s.resolve("server-cert.pem")), tlsReplica("u", pu, garbage)));
            ServiceRig.await("second rejection", 10_000, () -> String.valueOf(rig.service.lastError()).contains("garbage"));
            assertTrue(rig.service.lastError().contains("replica u: tls: cannot load"), rig.service.lastError());
            assertEquals(Set.of("t"), rig.service.managed().keySet());
            assertTrue(HotReconfigurationTest.listening(pt));
        }
        // the first configuration itself: the service does not start, and says why
        JsonObject bad = ServiceRig.config(0, tlsReplica("x", pu, dir.resolve("nope.pem")));
        Exception e = assertThrows(Exception.class, () -> new ServiceRig(dir.resolve("bad.json"), bad).close());
        assertTrue(String.valueOf(e.getMessage()).contains("replica x: tls: cert file"), e.toString());
    }
}
