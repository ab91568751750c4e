package dev.multifdcolo.app;

import dev.multifdcolo.qemu.MigrationException;
import dev.multifdcolo.qemu.Qemu;
import dev.multifdcolo.qemu.QemuBinaries;
import dev.multifdcolo.qemu.QemuBinary;
import dev.multifdcolo.qemu.Qmp;
import dev.multifdcolo.qemu.Qtest;
import dev.multifdcolo.qemu.TestCerts;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.net.Connection;
import dev.multifdcolo.secondary.net.TlsOptions;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A real QEMU source migrates to our receiver over TLS with a client certificate
 * ({@code tls-creds-x509,endpoint=client} + {@code migrate-set-parameters tls-creds}): plain and
 * multifd, image equal to the source's {@code pmemsave}. A source without a certificate, or with
 * one of another CA, is refused in the handshake (QEMU's migration fails, our replica logs why
 * and goes on), and the same source then migrates with good credentials.
 */
@Tag("qemu")
class QemuTlsSourceTest {
    static final long RAM = QemuSourceInteropTest.RAM;
    @TempDir
    static Path dir;
    static final List<String> LOG = new CopyOnWriteArrayList<>();
    /** Held: JUL keeps loggers only weakly, and a collected one would lose the capture handler. */
    static final Logger CONNECTION_LOG = Logger.getLogger(Connection.class.getName());
    static final Handler CAPTURE = new Handler() {
        @Override
        public void publish(LogRecord r) {
            LOG.add(r.getMessage());
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };

    @BeforeAll
    static void certs() {
        TestCerts.serverDir(dir.resolve("server"));
        for (TestCerts.Client c : TestCerts.Client.values()) {
            TestCerts.qemuClientDir(dir.resolve(c.name()), c);
        }
        CONNECTION_LOG.addHandler(CAPTURE);
    }

    @AfterAll
    static void unhook() {
        CONNECTION_LOG.removeHandler(CAPTURE);
    }

    static ReplicaConfig config(int channels) {
        Path s = dir.resolve("server");
        return ReplicaConfig.defaults("tls", "127.0.0.1", 0).withMultifd(channels)
                .withTls(TlsOptions.pem(s.resolve("server-cert.pem"), s.resolve("server-key.pem"), s.resolve("ca-cert.pem")));
    }

    static QemuBinary binary(String version) {
        return version.equals("7.2") ? QemuBinaries.assume72() : QemuBinaries.assume111();
    }

    /** The source with one tls-creds-x509 object per kind of client identity (id = the kind's name). */
    static Qemu source(QemuBinary bin) throws Exception {
        Qemu.Builder b = Qemu.builder(bin).name("tls-src").args(Qemu.MINIMAL_MACHINE).qtest(true);
        for (TestCerts.Client c : TestCerts.Client.values()) {
            b.args("-object", "tls-creds-x509,id=" + c.name() + ",dir=" + dir.resolve(c.name()) + ",endpoint=client");
        }
        return b.start();
    }

    @ParameterizedTest(name = "QEMU {0} -> us over TLS, multifd {1}, return-path {2}")
    @CsvSource({
            "7.2, 0, false",
            "7.2, 4, false",
            "11.1, 0, false",
            "11.1, 4, true",
    })
    void sourceToUsOverTls(String version, int channels, boolean returnPath) throws Exception {
        QemuBinary bin = binary(version);
        try (InProcessReceiver rx = new InProcessReceiver(config(channels), 4);
             Qemu src = source(bin)) {
            Qmp qmp = src.qmp();
            Random rnd = new Random(channels * 131L + version.hashCode());
            QemuSourceInteropTest.writeWorkingSet(src.qtest(), rnd, 0);
            MigrationResult res = migrate(qmp, src.qtest(), rx, channels, returnPath, TestCerts.Client.GOOD, rnd);
            assertImage(qmp, res);
            assertEquals(returnPath, res.returnPath());
            if (channels > 0) {
                assertTrue(res.stats().packets.sum() > 0, "pages went over the multifd channels");
                for (int c = 0; c < channels; c++) {
                    assertTrue(res.stats().channelBytes(c) > 0, "multifd channel " + c + " carried bytes");
                }
            }
            assertEquals(0, rx.replica.rejections(Rule.TLS_HANDSHAKE));
            assertEquals(0, rx.replica.rejections(Rule.CHANNEL_ORDER));
            res.memory().close();
        }
    }

    @ParameterizedTest(name = "QEMU {0} with {1} is refused; then good credentials migrate (multifd {2})")
    @CsvSource({
            "7.2, NONE, 2",
            "7.2, OTHER_CA, 0",
            "11.1, NONE, 0",
            "11.1, OTHER_CA, 2",
    })
    void sourceWithoutAValidCertificateIsRefused(String version, TestCerts.Client bad, int channels) throws Exception {
        QemuBinary bin = binary(version);
        try (InProcessReceiver rx = new InProcessReceiver(config(channels), 4)) {
            Random rnd = new Random(version.hashCode() + bad.ordinal());
            try (Qemu src = source(bin)) {
                Qmp qmp = src.qmp();
                QemuSourceInteropTest.writeWorkingSet(src.qtest(), rnd, 0);
                LOG.clear();
                setUp(qmp, channels, false, bad);
                qmp.migrate(rx.uri());
                MigrationException failed = assertThrows(MigrationException.class,
                        () -> qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofSeconds(30)));
                assertEquals("failed", failed.status(), failed.getMessage());
                System.out.println("QEMU " + version + " with " + bad + ": " + failed.errorDesc());
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while ((rx.replica.rejections(Rule.TLS_HANDSHAKE) == 0 || LOG.isEmpty()) && System.nanoTime() < deadline) {
                    Thread.sleep(10);
                }
                assertTrue(rx.replica.rejections(Rule.TLS_HANDSHAKE) >= 1, "the refusal is counted as tls-handshake");
                assertNull(rx.replica.current(), "no session was started by a refused source");
                List<String> lines = LOG.stream().filter(l -> l.startsWith("tls: tls-handshake: TLS handshake from 127.0.0.1:")).toList();
                assertTrue(!lines.isEmpty() && lines.stream().allMatch(l -> l.contains(" failed: ") && l.contains("certificate")),
                        "logged with the peer and a certificate reason: " + LOG);
                System.out.println("our log: " + lines);
            }
            // The replica keeps listening: a source with a valid certificate migrates. (A fresh
            // QEMU: retrying on the refused one races QEMU's own cleanup of the failed multifd
            // migration, "There's a migration process in progress" / "duplicate yank instance".)
            try (Qemu src = source(bin)) {
                Qmp qmp = src.qmp();
                QemuSourceInteropTest.writeWorkingSet(src.qtest(), rnd, 0);
                MigrationResult res = migrate(qmp, src.qtest(), rx, channels, false, TestCerts.Client.GOOD, rnd);
                assertImage(qmp, res);
                res.memory().close();
            }
            assertEquals(1, rx.replica.completed());
            assertEquals(0, rx.replica.failed());
        }
    }

    /**
     * COLO over TLS: a CPU-less COLO primary (memory from a loader, {@code system_reset}
     * re-dirties it, like {@code QemuColoPrimaryTest}) checkpoints into our secondary over TLS,
     * every COLO reply going through the SslHandler. Meanwhile a client without a certificate is
     * refused: the session and its committed image are untouched and checkpoints go on.
     */
    @ParameterizedTest(name = "QEMU {0} COLO primary over TLS, multifd {1}")
    @CsvSource({"7.2, 2", "11.1, 2"})
    void coloOverTls(String version, int channels, @TempDir Path tmp) throws Exception {
        QemuBinary bin = binary(version);
        boolean v11 = version.equals("11.1");
        io.vertx.core.Vertx vertx = Transports.vertx("auto", new io.vertx.core.VertxOptions().setEventLoopPoolSize(4));
        try {
            int port = InProcessReceiver.freePort();
            dev.multifdcolo.secondary.Replica r = new dev.multifdcolo.secondary.Replica(config(channels).withPort(port)
                    .withFlushMode(dev.multifdcolo.secondary.stream.FlushMode.AUTO)
                    .withColo(ReplicaConfig.ColoOptions.on(300).withHeartbeat(5_000).withDigestOnCommit(true)));
            r.deploy(vertx, 4).await();
            List<dev.multifdcolo.secondary.colo.Checkpoint> commits = new CopyOnWriteArrayList<>();
            r.onSessionStart(s -> s.onCommit(commits::add));
            var next = r.nextMigration();
            byte[] blob = new byte[64 * 4096];
            new Random(7 + channels).nextBytes(blob);
            Path file = java.nio.file.Files.write(tmp.resolve("blob.bin"), blob);
            Qemu.Builder b = Qemu.builder(bin).name("tls-colo").args("-M", "none", "-m", "64M", "-nodefaults", "-display",
                    "none", "-device", "loader,file=" + file + ",addr=0x100000,force-raw=on")
                    .args("-object", "tls-creds-x509,id=GOOD,dir=" + dir.resolve("GOOD") + ",endpoint=client");
            try (Qemu primary = b.start()) {
                Qmp qmp = primary.qmp();
                qmp.setCapabilities(Map.of("x-colo", true, "multifd", true, "return-path", v11));
                qmp.setParameters(new JsonObject().put("x-checkpoint-delay", 300).put("multifd-channels", channels)
                        .put("tls-creds", "GOOD"));
                qmp.migrate("tcp:127.0.0.1:" + port);
                qmp.awaitMigrationStatus(Set.of("colo"), Duration.ofSeconds(30));
                byte[] expected = new byte[64 << 20];
                System.arraycopy(blob, 0, expected, 0x100000, blob.length);
                for (int k = 0; k < 6; k++) {
                    int before = commits.size();
                    qmp.execute("system_reset");      // the loader rewrites its pages: dirty for the next checkpoint
                    awaitTrue("a commit", () -> commits.size() > before);
                    if (k == 2) {
                        long epoch = r.current().epoch();
                        try (java.net.Socket plain = new java.net.Socket("127.0.0.1", port)) {
                            plain.getOutputStream().write(new byte[]{0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3});
                            awaitTrue("the refusal", () -> r.rejections(Rule.TLS_HANDSHAKE) == 1);
                        }
                        assertTrue(r.current().epoch() >= epoch && !r.current().finished(), "COLO goes on");
                    }
                }
                awaitTrue("7 commits (epoch 0 and 6 checkpoints)", () -> commits.size() >= 7);
                assertEquals("colo", qmp.queryMigrate().getString("status"));
                assertTrue(commits.stream().anyMatch(c -> c.dirtyPages() == 64), "a checkpoint carried the re-dirtied pages: "
                        + commits.stream().map(dev.multifdcolo.secondary.colo.Checkpoint::dirtyPages).toList());
                String want = commits.get(0).digest();
                for (var c : commits) {
                    assertEquals(want, c.digest(), "image digest at epoch " + c.epoch());
                }
                assertArrayEquals(expected, qmp.pmemsave(0, 64L << 20), "the primary's RAM");
                qmp.execute("x-colo-lost-heartbeat");
                MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
                assertTrue(res.colo().epoch() >= 6, "epoch " + res.colo().epoch());
                assertArrayEquals(expected, res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
                assertEquals(0, r.rejections(Rule.CHANNEL_ORDER));
                res.memory().close();
            }
        } finally {
            vertx.close().await();
        }
    }

    static void awaitTrue(String what, java.util.function.BooleanSupplier cond) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(20);
        }
    }

    static void setUp(Qmp qmp, int channels, boolean returnPath, TestCerts.Client creds) {
        Map<String, Boolean> caps = new HashMap<>();
        caps.put("multifd", channels > 0);
        caps.put("return-path", returnPath);
        caps.put("pause-before-switchover", true);
        qmp.setCapabilities(caps);
        // tls-hostname is left to QEMU's default, the host of the URI (127.0.0.1, in our certificate's SAN)
        JsonObject params = new JsonObject().put("tls-creds", creds.name()).put("max-bandwidth", 2L << 20)
                .put("downtime-limit", 1);
        if (channels > 0) {
            params.put("multifd-channels", channels);
        }
        qmp.setParameters(params);
    }

    /**
     * Migrates with a few dirty-bitmap passes (pages rewritten after each), the final pass after
     * pause-before-switchover so qtest writes never race it; returns our result.
     */
    static MigrationResult migrate(Qmp qmp, Qtest qt, InProcessReceiver rx, int channels, boolean returnPath,
                                   TestCerts.Client creds, Random rnd) throws Exception {
        setUp(qmp, channels, returnPath, creds);
        var next = rx.next();
        qmp.migrate(rx.uri());
        long lastSync = 0;
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        int round = 0;
        while (System.nanoTime() < end) {
            JsonObject st = qmp.queryMigrate();
            JsonObject ram = st.getJsonObject("ram");
            long syncs = ram == null ? 0 : ram.getLong("dirty-sync-count", 0L);
            if (!Set.of("setup", "active", "none").contains(st.getString("status", "none")) || syncs >= 3) {
                break;
            }
            if (syncs > lastSync) {
                QemuSourceInteropTest.writeWorkingSet(qt, rnd, ++round);
                lastSync = syncs;
            } else {
                Thread.sleep(2);
            }
        }
        qmp.setParameters(new JsonObject().put("downtime-limit", 300));
        qmp.setParameters(new JsonObject().put("max-bandwidth", 10L << 30));
        qmp.awaitMigrationStatus(Set.of("pre-switchover"), Duration.ofSeconds(60));
        qmp.execute("migrate-continue", new JsonObject().put("state", "pre-switchover"));
        qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofSeconds(60));
        return next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }

    static void assertImage(Qmp qmp, MigrationResult res) {
        byte[] expected = qmp.pmemsave(0, RAM);
        byte[] ours = res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE);
        assertArrayEquals(expected, ours, "our image equals the source's pmemsave");
    }
}
