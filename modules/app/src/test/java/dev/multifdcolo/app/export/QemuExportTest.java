package dev.multifdcolo.app.export;

import dev.multifdcolo.app.Transports;
import dev.multifdcolo.app.cli.ExportCommand;
import dev.multifdcolo.qemu.Qemu;
import dev.multifdcolo.qemu.QemuBinaries;
import dev.multifdcolo.qemu.QemuBinary;
import dev.multifdcolo.qemu.Qmp;
import dev.multifdcolo.qemu.guest.DirtyGuest;
import dev.multifdcolo.secondary.ImageWriter;
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
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import picocli.CommandLine;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Export back to a real QEMU 11.1: a precopy image (file stream, {@code migrate-incoming exec:cat})
 * and a failed-over COLO replica's last checkpoint (live over TCP) are loaded by a fresh QEMU with
 * the source's machine options; its RAM equals our image and the guest goes on from there.
 */
@Tag("qemu")
class QemuExportTest {
    static Vertx vertx;

    @BeforeAll
    static void start() {
        vertx = Transports.vertx("auto", new VertxOptions().setEventLoopPoolSize(4));
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
    }

    /**
     * Precopy only: an 11.1 guest that dirtied a few passes and halted migrates to our plain
     * receiver; the image (written by ImageWriter, exported by the CLI to a file) is loaded by a
     * fresh 11.1 with {@code -incoming defer} + {@code migrate-incoming exec:cat FILE}.
     */
    @Test
    void precopyImageToFreshQemuFromFile(@TempDir Path dir) throws Exception {
        QemuBinary bin = QemuBinaries.assume111();
        int port = freePort();
        Replica r = new Replica(ReplicaConfig.defaults("export-precopy", "127.0.0.1", port));
        r.deploy(vertx, 2).await();
        var next = r.nextMigration();
        Path bios = DirtyGuest.light().withRegion(64L << 20, 8L << 20).withMaxPasses(2).writeTo(dir.resolve("guest.bin"));
        Path imageDir = dir.resolve("image");
        DirtyGuest.Status atSource;
        try (Qemu source = Qemu.builder(bin).name("source").args(DirtyGuest.qemuArgs(bios, 160)).start()) {
            Qmp qmp = source.qmp();
            await("the guest to halt", 30, () -> DirtyGuest.status(qmp::hmp).done());
            atSource = DirtyGuest.status(qmp::hmp);
            qmp.setParameters(new JsonObject().put("max-bandwidth", 10L << 30));
            qmp.migrate("tcp:127.0.0.1:" + port);
            qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofSeconds(30));
        }
        MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
        byte[] ours;
        try {
            ImageWriter.write(res, imageDir);
            ours = res.memory().block("pc.ram").guest().toArray(ValueLayout.JAVA_BYTE);
        } finally {
            res.memory().close();
        }
        Path stream = dir.resolve("vm.mig");
        int rc = new CommandLine(new ExportCommand()).execute("--image", imageDir.toString(), "--out", stream.toString());
        assertEquals(0, rc, "export --out");

        List<String> args = new ArrayList<>(DirtyGuest.qemuArgs(bios, 160));
        args.addAll(List.of("-incoming", "defer"));
        try (Qemu fresh = Qemu.builder(bin).name("fresh").args(args).start()) {
            Qmp qmp = fresh.qmp();
            qmp.migrateIncoming("exec:cat " + stream.toAbsolutePath());
            qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofSeconds(30));
            JsonObject st = qmp.queryStatus();
            System.out.println("precopy export loaded: query-status " + st.encode());
            assertEquals("running", st.getString("status"), "the source ran: the destination runs: " + st);
            assertSameRam(qmp.pmemsave(0, 160L << 20), ours, "after the load");
            DirtyGuest.Status s = DirtyGuest.status(qmp::hmp);
            assertTrue(s.done(), "the guest is still the halted one: " + s);
            assertEquals(atSource.pagesWritten(), s.pagesWritten());
        }
    }

    /**
     * COLO: an 11.1 COLO primary running the guest (forever) → our COLO secondary; after 20
     * checkpoints the primary is killed with SIGKILL, our replica fails over, and its last
     * checkpoint is sent live (multifd {0} or plain) to a fresh 11.1 started with {@code -S
     * -incoming defer}: right after the load its RAM is our image, and after {@code cont} the guest's
     * progress counter goes on from the checkpointed value.
     */
    @ParameterizedTest(name = "COLO failover export, multifd {0}")
    @ValueSource(ints = {0, 4})
    void coloCheckpointToFreshQemuLive(int channels, @TempDir Path dir) throws Exception {
        QemuBinary bin = QemuBinaries.assume111();
        int port = freePort();
        ReplicaConfig cfg = ReplicaConfig.defaults("export-colo", "127.0.0.1", port).withMultifd(channels)
                .withFlushMode(FlushMode.AUTO).withColo(ReplicaConfig.ColoOptions.on(300).withHeartbeat(5_000));
        Replica r = new Replica(cfg);
        r.deploy(vertx, 4).await();
        List<Checkpoint> commits = new CopyOnWriteArrayList<>();
        r.onSessionStart(s -> s.onCommit(commits::add));
        var next = r.nextMigration();
        Path bios = DirtyGuest.light().withMaxPasses(0).writeTo(dir.resolve("guest.bin"));
        MigrationResult res;
        try (Qemu primary = Qemu.builder(bin).name("primary").args(DirtyGuest.qemuArgs(bios, 160)).start()) {
            Qmp qmp = primary.qmp();
            qmp.setCapabilities(Map.of("x-colo", true, "return-path", true, "multifd", channels > 0));
            JsonObject p = new JsonObject().put("x-checkpoint-delay", 300).put("max-bandwidth", 10L << 30)
                    .put("downtime-limit", 2000);
            if (channels > 0) {
                p.put("multifd-channels", channels);
            }
            qmp.setParameters(p);
            await("the guest to start", 20, () -> DirtyGuest.status(qmp::hmp).running());
            qmp.migrate("tcp:127.0.0.1:" + port);
            qmp.awaitMigrationStatus(Set.of("colo"), Duration.ofSeconds(30));
            await("20 checkpoints", 40, () -> commits.size() >= 21);
            primary.kill();
        }
        res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
        assertTrue(res.colo().epoch() >= 20, "failed over at epoch " + res.colo().epoch());
        assertEquals(commits.getLast().epoch(), res.colo().epoch(), "the replica keeps its last commit");
        byte[] ours;
        long checkpointed;
        Path imageDir = dir.resolve("image");
        try {
            ours = res.memory().block("pc.ram").guest().toArray(ValueLayout.JAVA_BYTE);
            checkpointed = status(ours).pagesWritten();
            ImageWriter.write(res, imageDir);
        } finally {
            res.memory().close();
        }
        assertTrue(status(ours).running(), "the checkpoint caught the guest running: " + status(ours));

        List<String> args = new ArrayList<>(DirtyGuest.qemuArgs(bios, 160));
        args.addAll(List.of("-S", "-incoming", "defer"));
        try (Qemu fresh = Qemu.builder(bin).name("fresh").args(args).start()) {
            Qmp qmp = fresh.qmp();
            if (channels > 0) {
                qmp.setCapabilities(Map.of("multifd", true));
                qmp.setParameters(new JsonObject().put("multifd-channels", channels));
            }
            qmp.migrateIncoming("tcp:127.0.0.1:0");
            int target = qmp.incomingPort();
            List<String> cli = new ArrayList<>(List.of("--image", imageDir.toString(), "--connect", "127.0.0.1:" + target,
                    "--multifd-channels", String.valueOf(channels)));
            int rc = new CommandLine(new ExportCommand()).execute(cli.toArray(String[]::new));
            assertEquals(0, rc, "export --connect (loaded: SHUT(0) on the return path)");
            qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofSeconds(30));
            JsonObject st = qmp.queryStatus();
            System.out.println("COLO export (multifd " + channels + ") of epoch " + res.colo().epoch()
                    + " loaded: query-status " + st.encode() + ", checkpointed status " + status(ours));
            assertEquals(false, st.getBoolean("running"), "-S: not running before cont: " + st);
            assertSameRam(qmp.pmemsave(0, 160L << 20), ours, "right after the load");
            qmp.cont();
            await("the guest to run on", 10, () -> qmp.queryStatus().getBoolean("running"));
            Thread.sleep(1000);
            DirtyGuest.Status s1 = DirtyGuest.status(qmp::hmp);
            Thread.sleep(500);
            DirtyGuest.Status s2 = DirtyGuest.status(qmp::hmp);
            System.out.println("after cont: " + s1 + " then " + s2);
            assertTrue(s1.running() && s2.running(), "the guest runs: " + s1 + " / " + s2);
            assertTrue(s1.pagesWritten() >= checkpointed, "continues from the checkpoint: " + checkpointed + " -> " + s1);
            assertTrue(s2.pagesWritten() > s1.pagesWritten(), "and keeps going: " + s1.pagesWritten() + " -> " + s2.pagesWritten());
            assertTrue(s1.generation() >= status(ours).generation(), "burst generation continues too");
        }
    }

    /**
     * QEMU 7.2: a CPU-less COLO primary ({@code -M none}, memory from a loader, see
     * QemuColoPrimaryTest) → our secondary; after 5 checkpoints the primary is killed, and the last
     * checkpoint goes (legacy framing, plain or multifd {0}) to a fresh 7.2 with the same options:
     * RAM equal, and the run state in the checkpoint's globalstate is handed over.
     */
    @ParameterizedTest(name = "QEMU 7.2 CPU-less COLO failover export, multifd {0}")
    @ValueSource(ints = {0, 2})
    void qemu72ColoCheckpointToFreshQemu(int channels, @TempDir Path dir) throws Exception {
        QemuBinary bin = QemuBinaries.assume72();
        int port = freePort();
        ReplicaConfig cfg = ReplicaConfig.defaults("export-72", "127.0.0.1", port).withMultifd(channels)
                .withFlushMode(FlushMode.AUTO).withColo(ReplicaConfig.ColoOptions.on(300).withHeartbeat(5_000));
        Replica r = new Replica(cfg);
        r.deploy(vertx, 4).await();
        List<Checkpoint> commits = new CopyOnWriteArrayList<>();
        r.onSessionStart(s -> s.onCommit(commits::add));
        var next = r.nextMigration();
        byte[] blob = new byte[64 * 4096];
        new java.util.Random(720 + channels).nextBytes(blob);
        Path file = java.nio.file.Files.write(dir.resolve("blob.bin"), blob);
        List<String> machine = List.of("-M", "none", "-m", "64M", "-nodefaults", "-display", "none",
                "-device", "loader,file=" + file + ",addr=0x100000,force-raw=on");
        try (Qemu primary = Qemu.builder(bin).name("primary72").args(machine).start()) {
            Qmp qmp = primary.qmp();
            qmp.setCapabilities(Map.of("x-colo", true, "multifd", channels > 0));
            JsonObject p = new JsonObject().put("x-checkpoint-delay", 300);
            if (channels > 0) {
                p.put("multifd-channels", channels);
            }
            qmp.setParameters(p);
            qmp.migrate("tcp:127.0.0.1:" + port);
            qmp.awaitMigrationStatus(Set.of("colo"), Duration.ofSeconds(30));
            while (commits.size() < 6) {          // epoch 0 (precopy) + 5 checkpoints
                int before = commits.size();
                qmp.execute("system_reset");
                await("a commit", 20, () -> commits.size() > before);
            }
            primary.kill();
        }
        MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
        assertTrue(res.colo().epoch() >= 5, "failed over at epoch " + res.colo().epoch());
        byte[] ours;
        Path imageDir = dir.resolve("image");
        try {
            ours = res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE);
            ImageWriter.write(res, imageDir);
        } finally {
            res.memory().close();
        }
        assertArrayEquals(blob, Arrays.copyOfRange(ours, 0x100000, 0x100000 + blob.length), "the loader's pages");
        List<String> args = new ArrayList<>(machine);
        args.addAll(List.of("-incoming", "defer"));
        try (Qemu fresh = Qemu.builder(bin).name("fresh72").args(args).start()) {
            Qmp qmp = fresh.qmp();
            if (channels > 0) {
                qmp.setCapabilities(Map.of("multifd", true));
                qmp.setParameters(new JsonObject().put("multifd-channels", channels));
            }
            qmp.migrateIncoming("tcp:127.0.0.1:0");
            int target = qmp.incomingPort();
            int rc = new CommandLine(new ExportCommand()).execute("--image", imageDir.toString(), "--connect",
                    "127.0.0.1:" + target, "--framing", "legacy", "--multifd-channels", String.valueOf(channels));
            assertEquals(0, rc, "export --connect --framing legacy");
            qmp.awaitMigrationStatus(Set.of("completed"), Duration.ofSeconds(30));
            JsonObject st = qmp.queryStatus();
            System.out.println("7.2 COLO export (multifd " + channels + ") of epoch " + res.colo().epoch()
                    + " loaded: query-status " + st.encode());
            String handed = runState(java.nio.file.Files.readAllBytes(imageDir.resolve("device-state.bin")));
            assertEquals(handed, st.getString("status"), "the checkpoint's globalstate run state is handed over");
            assertArrayEquals(ours, qmp.pmemsave(0, 64L << 20), "RAM right after the load");
        }
    }

    /** The run-state name in the FULL "globalstate" section of verbatim device sections. */
    static String runState(byte[] dev) {
        byte[] id = "globalstate".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        for (int p = 0; p + 6 + id.length + 12 < dev.length; p++) {
            if (dev[p] == 0x04 && dev[p + 5] == id.length
                    && Arrays.equals(dev, p + 6, p + 6 + id.length, id, 0, id.length)) {
                int body = p + 6 + id.length + 8;
                int size = ByteBuffer.wrap(dev, body, 4).getInt();
                return new String(dev, body + 4, size - 1, java.nio.charset.StandardCharsets.US_ASCII);
            }
        }
        throw new AssertionError("no globalstate section");
    }

    /** The status block from an image of pc.ram (0x7000, little-endian words). */
    static DirtyGuest.Status status(byte[] pcRam) {
        ByteBuffer b = ByteBuffer.wrap(pcRam, (int) DirtyGuest.STATUS_ADDRESS, DirtyGuest.STATUS_WORDS * 4)
                .order(ByteOrder.LITTLE_ENDIAN);
        int[] w = new int[DirtyGuest.STATUS_WORDS];
        for (int i = 0; i < w.length; i++) {
            w[i] = b.getInt();
        }
        return DirtyGuest.Status.fromWords(w);
    }

    /** pc.ram equals guest-physical RAM except the legacy VGA/ROM window 0xA0000-0xFFFFF. */
    static void assertSameRam(byte[] pmem, byte[] ours, String when) {
        assertEquals(pmem.length, ours.length);
        assertArrayEquals(Arrays.copyOfRange(ours, 0, 0xA0000), Arrays.copyOfRange(pmem, 0, 0xA0000), when + ": low RAM");
        assertArrayEquals(Arrays.copyOfRange(ours, 0x100000, ours.length), Arrays.copyOfRange(pmem, 0x100000, pmem.length),
                when + ": RAM above 1 MiB");
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

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

}
