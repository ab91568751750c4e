package dev.multifdcolo.qemu;

import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;

import static dev.multifdcolo.qemu.Versions.MIB;
import static dev.multifdcolo.qemu.Versions.RAM;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The harness against real QEMU processes, once per version. */
@Tag("qemu")
class QemuHarnessTest {

    private static final long PATTERN_AT = 0x20_0000;
    private static final long MEMSET_AT = 0x100_0000;
    private static final int MEMSET_LEN = 0x3_0000;
    private static final long WORD_AT = RAM - 16;

    @ParameterizedTest(name = "QEMU {0}")
    @ValueSource(strings = {"7.2", "11.1"})
    void qtestWritesAreVisibleInPmemsave(String version) throws IOException {
        QemuBinary binary = Versions.require(version);
        byte[] pattern = Versions.pattern(0x5eed_0000L + version.hashCode(), MIB);
        try (Qemu vm = Qemu.builder(binary).name("mem" + version).qtest(true).args(Qemu.MINIMAL_MACHINE).start()) {
            Qtest qt = vm.qtest();
            qt.b64write(PATTERN_AT, pattern);
            qt.memset(MEMSET_AT, MEMSET_LEN, 0xa5);
            qt.writel(WORD_AT, 0xdead_beefL);
            assertEquals(0xdead_beefL, qt.readl(WORD_AT));
            assertEquals(0xa5, qt.readb(MEMSET_AT + 7));
            assertArrayEquals(Arrays.copyOfRange(pattern, 4096, 4096 + 8192), qt.b64read(PATTERN_AT + 4096, 8192));

            byte[] ram = vm.qmp().pmemsave(0, RAM);

            byte[] expected = new byte[RAM];
            System.arraycopy(pattern, 0, expected, (int) PATTERN_AT, pattern.length);
            Arrays.fill(expected, (int) MEMSET_AT, (int) MEMSET_AT + MEMSET_LEN, (byte) 0xa5);
            ByteBuffer.wrap(expected).order(ByteOrder.LITTLE_ENDIAN).putInt((int) WORD_AT, 0xdead_beef);
            Versions.assertSameBytes(expected, ram, "guest RAM of QEMU " + version);
        }
    }

    @ParameterizedTest(name = "QEMU {0}")
    @ValueSource(strings = {"7.2", "11.1"})
    void qmpErrorsBecomeQmpExceptions(String version) throws IOException {
        QemuBinary binary = Versions.require(version);
        try (Qemu vm = Qemu.builder(binary).name("err" + version).args(Qemu.MINIMAL_MACHINE).start()) {
            Qmp qmp = vm.qmp();
            QmpException unknown = assertThrows(QmpException.class, () -> qmp.execute("no-such-command"));
            assertEquals("CommandNotFound", unknown.errorClass());
            assertTrue(unknown.desc().contains("no-such-command"), unknown.desc());

            QmpException invalid = assertThrows(QmpException.class,
                    () -> qmp.setParameters(new JsonObject().put("multifd-channels", 0)));
            assertEquals("GenericError", invalid.errorClass());
            // 7.2 names the parameter multifd_channels, 11.1 multifd-channels
            assertTrue(invalid.desc().replace('_', '-').contains("multifd-channels"), invalid.desc());

            // the connection is still fine afterwards
            JsonObject status = qmp.queryStatus();
            assertEquals("prelaunch", status.getString("status"), status.encode());
            assertFalse(status.getBoolean("running"));
            assertTrue(qmp.hmp("info status").contains("paused"));
            assertTrue(qmp.greeting().getJsonObject("QMP").getJsonObject("version").containsKey("qemu"));
        }
    }

    @ParameterizedTest(name = "QEMU {0}")
    @ValueSource(strings = {"7.2", "11.1"})
    void closeLeavesNoProcess(String version) throws IOException {
        QemuBinary binary = Versions.require(version);
        Qemu vm = Qemu.builder(binary).name("close" + version).qtest(true).args(Qemu.MINIMAL_MACHINE).start();
        long pid = vm.pid();
        Path dir = vm.workDir();
        assertTrue(alive(pid));
        assertTrue(Files.exists(dir.resolve("qmp.sock")));

        vm.close();

        assertFalse(alive(pid), "QEMU pid " + pid + " still running");
        assertEquals(0, vm.exitCode().orElseThrow(), "QMP quit should end QEMU cleanly\n" + vm.log());
        assertFalse(Files.exists(dir), "work dir not removed");
        assertTrue(vm.log().contains("QEMU " + binary.version()));
        vm.close(); // idempotent
    }

    @ParameterizedTest(name = "QEMU {0}")
    @ValueSource(strings = {"7.2", "11.1"})
    void closeEscalatesToSignalsWhenQemuDoesNotAnswer(String version) throws Exception {
        QemuBinary binary = Versions.require(version);
        Qemu vm = Qemu.builder(binary).name("hung" + version).args(Qemu.MINIMAL_MACHINE)
                .quitGrace(Duration.ofMillis(300)).termGrace(Duration.ofMillis(300)).start();
        long pid = vm.pid();
        // a stopped process neither answers QMP nor acts on SIGTERM: only SIGKILL ends it
        assertEquals(0, new ProcessBuilder("kill", "-STOP", Long.toString(pid)).start().waitFor());
        long t0 = System.nanoTime();
        vm.close();
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertFalse(alive(pid), "QEMU pid " + pid + " still running");
        assertTrue(ms < 5000, "close took " + ms + " ms");
    }

    @ParameterizedTest(name = "QEMU {0}")
    @ValueSource(strings = {"7.2", "11.1"})
    void closeAfterCrashAndFailedStartAreClean(String version) throws IOException {
        QemuBinary binary = Versions.require(version);
        Qemu vm = Qemu.builder(binary).name("crash" + version).args(Qemu.MINIMAL_MACHINE).start();
        vm.kill();
        assertFalse(vm.isAlive());
        vm.close();

        IOException bad = assertThrows(IOException.class,
                () -> Qemu.builder(binary).name("bad" + version).args("-M", "no-such-machine", "-nodefaults").start());
        assertTrue(bad.getMessage().contains("no-such-machine"), bad.getMessage());
    }

    private static boolean alive(long pid) {
        return ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    }
}
