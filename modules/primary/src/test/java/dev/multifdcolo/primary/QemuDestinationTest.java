package dev.multifdcolo.primary;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.qemu.MigrationException;
import dev.multifdcolo.qemu.Qemu;
import dev.multifdcolo.qemu.QemuBinaries;
import dev.multifdcolo.qemu.QemuBinary;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Our sender into a real QEMU destination ({@code -M none -cpu qemu64,apic-id=0 -m 64M -S
 * -incoming defer}): after {@code completed}, QEMU's {@code pmemsave} of the 64 MiB equals our
 * image byte for byte. QEMU 7.2 gets LEGACY framing, 11.1 MODERN (its {@code -M none} defaults),
 * plus 11.1 in 7.2-compat mode fed LEGACY.
 */
@Tag("qemu")
class QemuDestinationTest {
    static final long RAM = 64L << 20;
    static final Duration TIMEOUT = Duration.ofSeconds(15);
    /** What an 11.1 destination needs to accept the 7.2 shape (QEMU-11.1-NOTES §5). */
    static final List<String> COMPAT72 = List.of("-global", "migration.multifd-flush-after-each-section=on");

    /** One destination setup and the sender options that match it. */
    record Setup(String version, Framing framing, int channels, Compression compression, boolean returnPath,
                 boolean compat72) {
        @Override
        public String toString() {
            return "QEMU " + version + " " + framing + (channels == 0 ? " plain" : " multifd " + channels)
                    + (compression == Compression.NONE ? "" : " " + compression.qemuName())
                    + (returnPath ? " return-path" : "") + (compat72 ? " (7.2-compat dest)" : "");
        }
    }

    static Stream<Arguments> setups() {
        List<Setup> s = new ArrayList<>();
        s.add(new Setup("7.2", Framing.LEGACY, 0, Compression.NONE, false, false));
        s.add(new Setup("7.2", Framing.LEGACY, 4, Compression.NONE, false, false));
        s.add(new Setup("7.2", Framing.LEGACY, 4, Compression.ZLIB, false, false));
        s.add(new Setup("7.2", Framing.LEGACY, 4, Compression.ZSTD, false, false));
        s.add(new Setup("7.2", Framing.LEGACY, 2, Compression.NONE, true, false));
        s.add(new Setup("11.1", Framing.MODERN, 0, Compression.NONE, false, false));
        s.add(new Setup("11.1", Framing.MODERN, 4, Compression.NONE, false, false));
        s.add(new Setup("11.1", Framing.MODERN, 4, Compression.NONE, true, false));
        s.add(new Setup("11.1", Framing.MODERN, 0, Compression.NONE, true, false));
        s.add(new Setup("11.1", Framing.MODERN, 4, Compression.ZLIB, false, false));
        s.add(new Setup("11.1", Framing.MODERN, 4, Compression.ZSTD, false, false));
        s.add(new Setup("11.1", Framing.LEGACY, 4, Compression.NONE, false, true));
        return s.stream().map(Arguments::of);
    }

    static QemuBinary binary(String version) {
        return version.equals("7.2") ? QemuBinaries.assume72() : QemuBinaries.assume111();
    }

    /** Starts a paused destination configured for {@code setup} and listening on an ephemeral port. */
    static Qemu destination(Setup setup) throws Exception {
        Qemu.Builder b = Qemu.builder(binary(setup.version())).name("dst" + setup.version())
                .args(Qemu.MINIMAL_MACHINE).args("-incoming", "defer");
        if (setup.compat72()) {
            b.args(COMPAT72);
        }
        Qemu dst = b.start();
        try {
            Map<String, Boolean> caps = new LinkedHashMap<>();
            if (setup.channels() > 0) {
                caps.put("multifd", true);
            }
            if (setup.returnPath()) {
                caps.put("return-path", true);
            }
            if (!caps.isEmpty()) {
                dst.qmp().setCapabilities(caps);
            }
            JsonObject params = new JsonObject();
            if (setup.channels() > 0) {
                params.put("multifd-channels", setup.channels())
                        .put("multifd-compression", setup.compression().qemuName());
            }
            if (setup.compat72()) {
                params.put("zero-page-detection", "legacy");
            }
            if (!params.isEmpty()) {
                dst.qmp().setParameters(params);
            }
            dst.qmp().migrateIncoming("tcp:127.0.0.1:0");
            return dst;
        } catch (Throwable t) {
            dst.close();
            throw t;
        }
    }

    static SenderConfig.Builder sender(Setup setup, int port) {
        return SenderConfig.builder("127.0.0.1", port).framing(setup.framing()).multifd(setup.channels())
                .compression(setup.compression()).returnPath(setup.returnPath());
    }

    static void assertLoaded(Qemu dst, GuestMemory mem) {
        try {
            dst.qmp().awaitMigrationStatus(Set.of("completed"), TIMEOUT);
        } catch (MigrationException e) {
            throw new AssertionError(e.getMessage() + "\n" + dst.log(), e);
        }
        byte[] got = dst.qmp().pmemsave(0, RAM);
        byte[] want = mem.blocks().get(0).guest().toArray(ValueLayout.JAVA_BYTE);
        assertSameImage(want, got);
    }

    static void assertSameImage(byte[] want, byte[] got) {
        assertEquals(want.length, got.length, "image size");
        int bad = 0;
        int first = -1;
        for (int p = 0; p < want.length / 4096; p++) {
            if (!java.util.Arrays.equals(want, p * 4096, p * 4096 + 4096, got, p * 4096, p * 4096 + 4096)) {
                bad++;
                if (first < 0) {
                    first = p;
                }
            }
        }
        if (bad > 0) {
            fail(bad + " of " + want.length / 4096 + " pages differ, first at 0x" + Integer.toHexString(first * 4096));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("setups")
    void destinationLoadsOurImage(Setup setup) throws Exception {
        try (GuestMemory mem = GuestImages.generate(RAM, 0x5eed + setup.hashCode(), 0.3);
             Qemu dst = destination(setup);
             MigrationSender s = MigrationSender.connect(sender(setup, dst.qmp().incomingPort()).build(), mem)) {
            SendStats st = s.migrate();
            assertEquals(RAM / 4096, st.pages(), st.summary());
            if (setup.returnPath()) {
                assertEquals(List.of(1), s.pongs(), "PONG(1) for our PING(1)");
            }
            assertLoaded(dst, mem);
        }
    }

    /**
     * Several rounds with pages rewritten between them (normal → other data, normal → zero,
     * zero → normal), sent as dirty sets, then a completion section with the last changes.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("iterationSetups")
    void dirtyPagesResentBetweenIterations(Setup setup) throws Exception {
        try (GuestMemory mem = GuestImages.generate(RAM, 77, 0.4);
             Qemu dst = destination(setup);
             MigrationSender s = MigrationSender.connect(sender(setup, dst.qmp().incomingPort()).build(), mem)) {
            RamBlock ram = mem.blocks().get(0);
            s.setup();
            s.iterate(DirtyPages.all(mem));
            for (int round = 1; round <= 3; round++) {
                DirtyPages dirty = rewrite(ram, round);
                if (round < 3) {
                    s.iterate(dirty);
                } else {
                    s.complete(dirty);
                }
            }
            s.finish();
            assertLoaded(dst, mem);
        }
    }

    static Stream<Arguments> iterationSetups() {
        return Stream.of(
                new Setup("7.2", Framing.LEGACY, 0, Compression.NONE, false, false),
                new Setup("7.2", Framing.LEGACY, 4, Compression.NONE, false, false),
                new Setup("11.1", Framing.MODERN, 4, Compression.NONE, false, false),
                new Setup("11.1", Framing.MODERN, 4, Compression.ZSTD, true, false)).map(Arguments::of);
    }

    /** Rewrites a few thousand pages: random data, zero pages and the page's last byte only. */
    static DirtyPages rewrite(RamBlock ram, int round) {
        DirtyPages d = DirtyPages.none();
        long pages = ram.pages();
        java.util.SplittableRandom r = new java.util.SplittableRandom(round * 1000L);
        for (int i = 0; i < 3000; i++) {
            long p = r.nextLong(pages);
            long off = p << 12;
            switch (i % 3) {
                case 0 -> ram.zeroPage(off);
                case 1 -> {
                    for (int k = 0; k < 4096; k += 8) {
                        ram.guest().set(ValueLayout.JAVA_LONG_UNALIGNED, off + k, r.nextLong());
                    }
                }
                default -> ram.guest().set(ValueLayout.JAVA_BYTE, off + 4095, (byte) (round + 1));
            }
            d.mark(ram, off);
        }
        return d;
    }

    /** A 7.2 destination rejects MULTIFD_FLUSH (modern framing); our sender must fail with one clear line. */
    @Test
    void modernFramingIntoQemu72FailsClearly() throws Exception {
        Setup setup = new Setup("7.2", Framing.MODERN, 2, Compression.NONE, false, false);
        try (GuestMemory mem = GuestImages.generate(RAM, 9, 0.3); Qemu dst = destination(setup);
             MigrationSender s = MigrationSender.connect(sender(setup, dst.qmp().incomingPort()).build(), mem)) {
            // 64 MiB do not fit in the socket buffers: QEMU exits after the setup section and our writes fail
            dev.multifdcolo.primary.MigrationException e =
                    assertThrows(dev.multifdcolo.primary.MigrationException.class, s::migrate);
            assertTrue(dst.awaitExit(TIMEOUT), "7.2 exits on a failed incoming migration");
            assertTrue(dst.log().contains("0x200"), dst.log());
            assertTrue(!e.getMessage().contains("\n"), e.getMessage());
            System.out.println("sender error: " + e.getMessage());
            System.out.println("QEMU 7.2 said: " + dst.log().strip());
        }
    }

    /**
     * QEMU-11.1-NOTES §5 says a 7.2 (legacy) source into an 11.1 destination left modern
     * "completes and loses every multifd page". With more data than the socket buffers hold it
     * does not even complete: the destination's channel threads wait after their SYNC for a
     * MULTIFD_FLUSH that never comes and stop reading. Our watchdog turns the hang into an error.
     */
    @Test
    void legacyFramingIntoModernQemu111StallsAndIsReported() throws Exception {
        Setup setup = new Setup("11.1", Framing.LEGACY, 4, Compression.NONE, false, false);
        try (GuestMemory mem = GuestImages.generate(RAM, 3, 0.0); Qemu dst = destination(setup);
             MigrationSender s = MigrationSender.connect(sender(setup, dst.qmp().incomingPort())
                     .stallTimeout(Duration.ofSeconds(2)).build(), mem)) {
            dev.multifdcolo.primary.MigrationException e =
                    assertThrows(dev.multifdcolo.primary.MigrationException.class, s::migrate);
            assertTrue(e.getMessage().contains("stopped reading"), e.getMessage());
            System.out.println("sender error: " + e.getMessage());
        }
    }

    /** The multifd hellos carry the VM UUID; a destination started with {@code -uuid} checks it. */
    @ParameterizedTest(name = "QEMU {0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"7.2", "11.1"})
    void multifdHelloCarriesTheConfiguredUuid(String version) throws Exception {
        String uuid = "00112233-4455-6677-8899-aabbccddeeff";
        Framing framing = version.equals("7.2") ? Framing.LEGACY : Framing.MODERN;
        Setup setup = new Setup(version, framing, 2, Compression.NONE, false, false);
        try (GuestMemory mem = GuestImages.generate(RAM, 11, 0.5);
             Qemu dst = Qemu.builder(binary(version)).name("dst-uuid").args(Qemu.MINIMAL_MACHINE)
                     .args("-uuid", uuid, "-incoming", "defer").start()) {
            dst.qmp().setCapabilities(Map.of("multifd", true));
            dst.qmp().setParameters(new JsonObject().put("multifd-channels", 2));
            dst.qmp().migrateIncoming("tcp:127.0.0.1:0");
            try (MigrationSender s = MigrationSender.connect(sender(setup, dst.qmp().incomingPort()).uuid(uuid).build(),
                    mem)) {
                s.migrate();
            }
            assertLoaded(dst, mem);
        }
    }
}
