package dev.multifdcolo.app;

import dev.multifdcolo.qemu.Qemu;
import dev.multifdcolo.qemu.QemuBinaries;
import dev.multifdcolo.qemu.QemuBinary;
import dev.multifdcolo.qemu.Qmp;
import dev.multifdcolo.qemu.guest.DirtyGuest;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.secondary.stream.FlushMode;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Real QEMU COLO primaries → our COLO secondary. */
@Tag("qemu")
class QemuColoPrimaryTest {
    static Vertx vertx;

    @BeforeAll
    static void start() {
        vertx = Transports.vertx("auto", new VertxOptions().setEventLoopPoolSize(4));
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
    }

    static Replica secondary(int port, int channels, long delayMs) {
        return secondary(port, channels, delayMs, dev.multifdcolo.wire.Compression.NONE);
    }

    static Replica secondary(int port, int channels, long delayMs, dev.multifdcolo.wire.Compression compression) {
        ReplicaConfig cfg = ReplicaConfig.defaults("colo-" + channels, "127.0.0.1", port).withMultifd(channels)
                .withCompression(compression)
                .withFlushMode(FlushMode.AUTO).withColo(ReplicaConfig.ColoOptions.on(delayMs).withHeartbeat(5_000).withDigestOnCommit(true));
        Replica r = new Replica(cfg);
        r.deploy(vertx, 4).await();
        return r;
    }

    static void await(String what, long seconds, java.util.function.BooleanSupplier cond) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(20);
        }
    }

    /**
     * QEMU 11.1 primary running the dirty guest under TCG (x-colo + return-path, x-checkpoint-delay
     * 600): at least 100 checkpoints while the guest writes, then it halts, two more checkpoints
     * pass, and our committed image equals the primary's RAM byte for byte.
     */
    @ParameterizedTest(name = "QEMU 11.1 guest primary, multifd {0}, compression {1}")
    @org.junit.jupiter.params.provider.CsvSource({"0, none", "4, none", "4, zstd"})
    void realGuestPrimary(int channels, String compression, @TempDir Path dir) throws Exception {
        QemuBinary bin = QemuBinaries.assume111();
        int port = InProcessReceiver.freePort();
        Replica r = secondary(port, channels, 600, dev.multifdcolo.wire.Compression.fromQemuName(compression));
        List<Checkpoint> commits = new CopyOnWriteArrayList<>();
        r.onSessionStart(s -> s.onCommit(commits::add));
        var next = r.nextMigration();
        // light: ~2 k pages per checkpoint over 64..128 MiB; 15 passes take ~75 s, > 100 checkpoints
        Path bios = DirtyGuest.light().withMaxPasses(15).writeTo(dir.resolve("guest.bin"));
        try (Qemu primary = Qemu.builder(bin).args(DirtyGuest.qemuArgs(bios, 160)).start()) {
            Qmp qmp = primary.qmp();
            qmp.setCapabilities(Map.of("x-colo", true, "return-path", true, "multifd", channels > 0));
            JsonObject p = new JsonObject().put("x-checkpoint-delay", 600).put("max-bandwidth", 10L << 30)
                    .put("downtime-limit", 2000);
            if (channels > 0) {
                p.put("multifd-channels", channels).put("multifd-compression", compression);
            }
            qmp.setParameters(p);
            qmp.migrate("tcp:127.0.0.1:" + port);
            qmp.awaitMigrationStatus(Set.of("colo"), Duration.ofSeconds(60));
            await("the guest to halt", 200, () -> DirtyGuest.status(qmp::hmp).done());
            int atDone = commits.size();
            await("two more checkpoints", 30, () -> commits.size() >= atDone + 2);
            assertTrue(commits.size() - 1 >= 100, "checkpoints while the guest ran: " + (commits.size() - 1));
            assertTrue(commits.stream().anyMatch(c -> c.dirtyPages() > 1000), "checkpoints carried the guest's writes");
            assertEquals("colo", qmp.queryMigrate().getString("status"));
            byte[] pmem = qmp.pmemsave(0, 160L << 20);
            assertSameRam(pmem, r.current().memory().block("pc.ram").guest(), "while in COLO");
            qmp.execute("x-colo-lost-heartbeat");
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
            assertEquals(commits.getLast().epoch(), res.colo().epoch());
            assertSameRam(pmem, res.memory().block("pc.ram").guest(), "after failover");
            assertTrue(res.deviceState().length > 10_000, "the checkpoint's device state of a pc machine is kept");
            res.memory().close();
        }
    }

    /**
     * Heavy checkpoints (≈ 16 k pages, the whole 64 MiB region) on multifd 4: QEMU 11.1 then also
     * syncs in the middle of each checkpoint (its dirty-page search wraps around RAM), and our gate
     * must let the rest of the checkpoint through (it deadlocked at the first checkpoint before
     * f36cd2e). At least 20 checkpoints while the guest writes, then RAM byte for byte.
     */
    @org.junit.jupiter.api.Test
    void heavyGuestPrimaryMultifd4(@TempDir Path dir) throws Exception {
        QemuBinary bin = QemuBinaries.assume111();
        int port = InProcessReceiver.freePort();
        Replica r = secondary(port, 4, 600);
        List<Checkpoint> commits = new CopyOnWriteArrayList<>();
        r.onSessionStart(s -> s.onCommit(commits::add));
        var next = r.nextMigration();
        // heavy: 32 pages per 1.2 ms, a pass over the 16,384-page region every ~0.6 s
        Path bios = DirtyGuest.heavy().withMaxPasses(30).writeTo(dir.resolve("guest.bin"));
        try (Qemu primary = Qemu.builder(bin).args(DirtyGuest.qemuArgs(bios, 160)).start()) {
            Qmp qmp = primary.qmp();
            qmp.setCapabilities(Map.of("x-colo", true, "return-path", true, "multifd", true));
            qmp.setParameters(new JsonObject().put("x-checkpoint-delay", 600).put("max-bandwidth", 10L << 30)
                    .put("downtime-limit", 2000).put("multifd-channels", 4));
            qmp.migrate("tcp:127.0.0.1:" + port);
            qmp.awaitMigrationStatus(Set.of("colo"), Duration.ofSeconds(60));
            await("the guest to halt", 200, () -> DirtyGuest.status(qmp::hmp).done());
            int atDone = commits.size();
            await("two more checkpoints", 30, () -> commits.size() >= atDone + 2);
            assertTrue(commits.size() - 1 >= 20, "checkpoints while the guest ran: " + (commits.size() - 1));
            assertTrue(commits.stream().anyMatch(c -> c.dirtyPages() > 8000), "heavy checkpoints: "
                    + commits.stream().map(Checkpoint::dirtyPages).toList());
            assertEquals("colo", qmp.queryMigrate().getString("status"));
            byte[] pmem = qmp.pmemsave(0, 160L << 20);
            assertSameRam(pmem, r.current().memory().block("pc.ram").guest(), "while in COLO");
            qmp.execute("x-colo-lost-heartbeat");
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
            assertEquals(commits.getLast().epoch(), res.colo().epoch());
            assertSameRam(pmem, res.memory().block("pc.ram").guest(), "after failover");
            res.memory().close();
        }
    }

    /** pc.ram equals guest-physical RAM except the legacy VGA/ROM window 0xA0000-0xFFFFF. */
    static void assertSameRam(byte[] pmem, MemorySegment pcRam, String when) {
        byte[] ours = pcRam.toArray(ValueLayout.JAVA_BYTE);
        assertEquals(pmem.length, ours.length);
        assertArrayEquals(Arrays.copyOfRange(pmem, 0, 0xA0000), Arrays.copyOfRange(ours, 0, 0xA0000), when + ": low RAM");
        assertArrayEquals(Arrays.copyOfRange(pmem, 0x100000, pmem.length), Arrays.copyOfRange(ours, 0x100000, ours.length),
                when + ": RAM above 1 MiB");
    }

    /**
     * QEMU 7.2 COLO primary: CPU-less (a TCG CPU deadlocks 7.2 after checkpoint 1), memory from a
     * loader, system_reset between checkpoints re-dirties it. Sends ENABLE_COLO, no return path.
     */
    @ParameterizedTest(name = "QEMU 7.2 CPU-less primary, multifd {0}")
    @ValueSource(ints = {0, 2, 4})
    void qemu72Primary(int channels, @TempDir Path dir) throws Exception {
        QemuBinary bin = QemuBinaries.assume72();
        int port = InProcessReceiver.freePort();
        Replica r = secondary(port, channels, 300);
        List<Checkpoint> commits = new CopyOnWriteArrayList<>();
        r.onSessionStart(s -> s.onCommit(commits::add));
        var next = r.nextMigration();
        byte[] blob = new byte[64 * 4096];
        new java.util.Random(72 + channels).nextBytes(blob);
        Arrays.fill(blob, 8 * 4096, 9 * 4096, (byte) 0);          // a zero page inside the blob
        Path file = Files.write(dir.resolve("blob.bin"), blob);
        try (Qemu primary = Qemu.builder(bin).args("-M", "none", "-m", "64M", "-nodefaults", "-display", "none",
                "-device", "loader,file=" + file + ",addr=0x100000,force-raw=on").start()) {
            Qmp qmp = primary.qmp();
            qmp.setCapabilities(Map.of("x-colo", true, "multifd", channels > 0));
            JsonObject p = new JsonObject().put("x-checkpoint-delay", 300);
            if (channels > 0) {
                p.put("multifd-channels", channels);
            }
            qmp.setParameters(p);
            qmp.migrate("tcp:127.0.0.1:" + port);
            qmp.awaitMigrationStatus(Set.of("colo"), Duration.ofSeconds(30));
            byte[] expected = new byte[64 << 20];
            System.arraycopy(blob, 0, expected, 0x100000, blob.length);
            int checkpoints = 6;
            for (int k = 0; k < checkpoints; k++) {
                int before = commits.size();
                qmp.execute("system_reset");      // the loader rewrites its pages: dirty for the next checkpoint
                await("a commit", 20, () -> commits.size() > before);
            }
            await("commits", 20, () -> commits.size() >= checkpoints + 1);
            assertEquals("colo", qmp.queryMigrate().getString("status"), "the primary stays in colo");
            assertTrue(commits.stream().anyMatch(c -> c.dirtyPages() == 64), "a checkpoint carried the 64 re-dirtied pages: "
                    + commits.stream().map(Checkpoint::dirtyPages).toList());
            // after every commit the image was the primary's memory: the loader's content
            String want = commits.get(0).digest();
            for (Checkpoint c : commits) {
                assertEquals(want, c.digest(), "image digest at epoch " + c.epoch());
            }
            assertArrayEquals(expected, r.current().memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(expected, qmp.pmemsave(0, 64L << 20), "and that is the primary's RAM");
            qmp.execute("x-colo-lost-heartbeat");
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
            assertTrue(res.colo().epoch() >= checkpoints);
            assertArrayEquals(expected, res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            res.memory().close();
        }
    }
}
