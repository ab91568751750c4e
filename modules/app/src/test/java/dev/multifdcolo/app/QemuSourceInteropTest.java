package dev.multifdcolo.app;

import dev.multifdcolo.qemu.Qemu;
import dev.multifdcolo.qemu.QemuBinaries;
import dev.multifdcolo.qemu.QemuBinary;
import dev.multifdcolo.qemu.Qmp;
import dev.multifdcolo.qemu.Qtest;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A real QEMU source migrates to our receiver: guest RAM written through qtest, rewritten while
 * the migration runs (bandwidth capped so it takes several iterations), and our image must equal
 * the source's {@code pmemsave} byte for byte.
 */
@Tag("qemu")
class QemuSourceInteropTest {
    static final long RAM = 64L << 20;

    @ParameterizedTest(name = "QEMU {0} -> us, multifd {1}, {2}, return-path {3}")
    @CsvSource({
            "7.2, 0, none, false",
            "7.2, 1, none, false",
            "7.2, 2, none, false",
            "7.2, 4, none, false",
            "7.2, 4, none, true",
            "7.2, 4, zlib, false",
            "7.2, 4, zstd, false",
            "11.1, 0, none, false",
            "11.1, 0, none, true",
            "11.1, 4, none, false",
            "11.1, 4, none, true",
            "11.1, 4, zlib, false",
            "11.1, 4, zstd, true",
    })
    void sourceToUs(String version, int channels, String compression, boolean returnPath) throws Exception {
        QemuBinary bin = version.equals("7.2") ? QemuBinaries.assume72() : QemuBinaries.assume111();
        ReplicaConfig cfg = ReplicaConfig.defaults("interop", "127.0.0.1", 0).withMultifd(channels)
                .withCompression(Compression.fromQemuName(compression)).withFlushMode(FlushMode.AUTO);
        try (InProcessReceiver rx = new InProcessReceiver(cfg, 4);
             Qemu src = Qemu.builder(bin).args(Qemu.MINIMAL_MACHINE).qtest(true).start()) {
            Qmp qmp = src.qmp();
            Qtest qt = src.qtest();
            Random rnd = new Random(channels * 31L + version.hashCode() + compression.hashCode());
            writeWorkingSet(qt, rnd, 0);
            Map<String, Boolean> caps = new HashMap<>();
            caps.put("multifd", channels > 0);
            caps.put("return-path", returnPath);
            // the source stops before its final RAM pass and waits for us: qtest writes (which
            // bypass a stopped VM) are then never racing the last dirty-bitmap sync
            caps.put("pause-before-switchover", true);
            qmp.setCapabilities(caps);
            JsonObject params = new JsonObject().put("max-bandwidth", 2L << 20).put("downtime-limit", 1);
            if (channels > 0) {
                params.put("multifd-channels", channels).put("multifd-compression", compression);
            }
            qmp.setParameters(params);
            var next = rx.next();
            qmp.migrate(rx.uri());
            // After every dirty-bitmap pass, rewrite a batch of pages. With a 1 ms downtime limit the
            // source cannot converge while a batch is pending, so it iterates deterministically.
            int rounds = 0;
            long lastSync = 0;
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < end) {
                JsonObject st = qmp.queryMigrate();
                JsonObject ram = st.getJsonObject("ram");
                long syncCount = ram == null ? 0 : ram.getLong("dirty-sync-count", 0L);
                if (!Set.of("setup", "active", "none").contains(st.getString("status", "none")) || syncCount >= 4) {
                    break;
                }
                if (syncCount > lastSync) {
                    writeWorkingSet(qt, rnd, ++rounds);
                    lastSync = syncCount;
                } else {
                    Thread.sleep(2);
                }
            }
            qmp.setParameters(new JsonObject().put("downtime-limit", 300));
            qmp.setParameters(new JsonObject().put("max-bandwidth", 10L << 30));
            qmp.awaitMigrationStatus(Set.of("pre-switchover"), Duration.ofSeconds(60));
            qmp.execute("migrate-continue", new JsonObject().put("state", "pre-switchover"));
            JsonObject info = qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofSeconds(60));
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
            byte[] expected = qmp.pmemsave(0, RAM);
            byte[] ours = res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE);
            assertEquals(expected.length, ours.length);
            assertArrayEquals(expected, ours, "our image equals the source's pmemsave");
            long syncs = info.getJsonObject("ram").getLong("dirty-sync-count");
            assertTrue(syncs >= 3, "several iterations happened (dirty-sync-count " + syncs + ", rewrite rounds " + rounds + ")");
            assertEquals(returnPath, res.returnPath());
            if (channels > 0) {
                assertTrue(res.stats().packets.sum() > 0, "pages went over multifd");
            }
            res.memory().close();
        }
    }

    /** Random pages, text-like pages and zeroed pages spread over the 64 MiB. */
    static void writeWorkingSet(Qtest qt, Random rnd, int round) {
        int pages = round == 0 ? 600 : 64;
        for (int i = 0; i < pages; i++) {
            long page = rnd.nextInt((int) (RAM / 4096));
            long addr = page * 4096;
            switch (rnd.nextInt(4)) {
                case 0 -> qt.memset(addr, 4096, 0);
                case 1 -> qt.memset(addr, 4096, 1 + rnd.nextInt(255));
                default -> {
                    byte[] b = new byte[4096];
                    if (rnd.nextBoolean()) {
                        rnd.nextBytes(b);
                    } else {
                        byte[] text = ("round " + round + " page " + page + " the quick brown fox ").getBytes();
                        for (int k = 0; k < b.length; k++) {
                            b[k] = text[k % text.length];
                        }
                    }
                    qt.b64write(addr, b);
                }
            }
        }
    }
}
