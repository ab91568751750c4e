package dev.multifdcolo.qemu;

import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.Set;

import static dev.multifdcolo.qemu.Versions.MIB;
import static dev.multifdcolo.qemu.Versions.RAM;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Real QEMU to real QEMU with multifd: proves the harness can drive a migration end to end. */
@Tag("qemu")
class QemuMigrationTest {

    private static final Duration MIGRATION_TIMEOUT = Duration.ofSeconds(20);

    @ParameterizedTest(name = "QEMU {0} -> QEMU {0}")
    @ValueSource(strings = {"7.2", "11.1"})
    void multifdMigrationCopiesRam(String version) throws IOException {
        QemuBinary binary = Versions.require(version);
        byte[] pattern = Versions.pattern(0xc0_10_00L + version.hashCode(), MIB);
        try (Qemu src = Qemu.builder(binary).name("src" + version).qtest(true).args(Qemu.MINIMAL_MACHINE).start();
             Qemu dst = Qemu.builder(binary).name("dst" + version).args(Qemu.MINIMAL_MACHINE)
                     .args("-incoming", "defer").start()) {
            src.qtest().b64write(0x10_0000, pattern);
            src.qtest().memset(0x80_0000, MIB, 0x3c);

            for (Qemu vm : new Qemu[] {src, dst}) {
                vm.qmp().setCapabilities(Map.of("multifd", true));
                vm.qmp().setParameters(new JsonObject().put("multifd-channels", 2));
            }
            dst.qmp().migrateIncoming("tcp:127.0.0.1:0");
            int port = dst.qmp().incomingPort();
            src.qmp().migrate("tcp:127.0.0.1:" + port);

            JsonObject done = src.qmp().awaitMigrationStatus(Set.of("completed"), MIGRATION_TIMEOUT);
            dst.qmp().awaitMigrationStatus(Set.of("completed"), MIGRATION_TIMEOUT);
            assertTrue(done.getJsonObject("ram").getLong("transferred") > 0, done.encode());
            assertTrue(done.getJsonObject("ram").getLong("multifd-bytes", 0L) > 0, "no multifd traffic: " + done.encode());

            byte[] before = src.qmp().pmemsave(0, RAM);
            byte[] after = dst.qmp().pmemsave(0, RAM);
            Versions.assertSameBytes(before, after, "destination RAM after migration (QEMU " + version + ")");
            assertArrayEquals(pattern, Arrays.copyOfRange(after, 0x10_0000, 0x10_0000 + MIB));
            assertEquals(0x3c, after[0x80_0000 + 12345]);
        }
    }
}
