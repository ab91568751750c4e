package dev.multifdcolo.qemu.guest;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The image, its patching and the xp parsers, without QEMU. */
class DirtyGuestTest {

    /** Real QEMU 11.1 output of {@code xp /20wx 0x7000} (the light guest, 1 s after start). */
    static final String XP_STATUS_RUNNING = """
            00007000: 0x4e555244 0x00000324 0x00000c90 0x00000000\r
            00007010: 0x00000000 0x00000c90 0x00000004 0x000004b0\r
            00007020: 0x04000000 0x00004000 0x00000000 0x00000003\r
            00007030: 0x0027b03f 0x002fa04b 0x00000000 0x00000001\r
            00007040: 0x000f4527 0x000002eb 0x00000004 0x00005c32\r
            """;

    static final String XP_STATUS_DONE = """
            00007000: 0x454e4f44 0x00000030 0x00000300 0x00000003
            00007010: 0x00000001 0x00000000 0x00000010 0x00000000
            """;

    @Test
    void committedImageHasTheDocumentedLayout() throws IOException {
        Path source = GuestImages.sourceDir().orElseThrow();
        byte[] bin = Files.readAllBytes(source.resolve("dirty.bin"));
        assertEquals(DirtyGuest.IMAGE_SIZE, bin.length);
        DirtyGuest g = DirtyGuest.fromImage(bin);
        assertEquals(DirtyGuest.MAGIC_PARAMS, DirtyGuest.word(bin, DirtyGuest.P_MAGIC));
        assertEquals(DirtyGuest.LAYOUT_VERSION, DirtyGuest.word(bin, DirtyGuest.P_VERSION));
        // assembled defaults = light
        assertEquals(DirtyGuest.LIGHT_BURST, g.burst());
        assertEquals(DirtyGuest.DEFAULT_PERIOD_MICROS, g.delay());
        assertEquals(DirtyGuest.Pacing.HALT, g.pacing());
        assertEquals(DirtyGuest.DEFAULT_REGION_START, g.regionStart());
        assertEquals(16384, g.regionPages());
        assertEquals(0, g.maxPasses());
        // reset vector: a near jmp at 0xFFF0, the tag at 0xFFF8
        assertEquals((byte) 0xE9, bin[0xFFF0]);
        assertEquals("DRTYBIOS", new String(bin, 0xFFF8, 8, java.nio.charset.StandardCharsets.US_ASCII));
    }

    @Test
    void freshBuildMatchesCommittedImage() throws IOException {
        assumeTrue(GuestImages.binutilsAvailable(), "binutils (as, ld) not installed");
        Path source = GuestImages.sourceDir().orElseThrow();
        Path built = GuestImages.build(source);
        assertArrayEquals(Files.readAllBytes(source.resolve("dirty.bin")), Files.readAllBytes(built),
                "src/guest/dirty.bin is stale: run src/guest/build.sh and commit dirty.bin");
        assertArrayEquals(Files.readAllBytes(built), DirtyGuest.load().image());
    }

    @Test
    void patchingWritesLittleEndianWordsAndLeavesTheOriginalAlone() {
        DirtyGuest base = DirtyGuest.load();
        DirtyGuest g = base.withBurst(0x1234).withDelay(0xFFFF_FFFEL).withRegion(0x0800_0000L, 0x0010_0000L)
                .withMaxPasses(7);
        byte[] img = g.image();
        assertEquals(0x1234, DirtyGuest.word(img, DirtyGuest.P_BURST));
        assertEquals(0xFFFF_FFFE, DirtyGuest.word(img, DirtyGuest.P_DELAY));
        assertEquals(0x0800_0000, DirtyGuest.word(img, DirtyGuest.P_REGION_START));
        assertEquals(256, DirtyGuest.word(img, DirtyGuest.P_REGION_PAGES));
        assertEquals(7, DirtyGuest.word(img, DirtyGuest.P_MAX_PASSES));
        assertEquals(0, DirtyGuest.word(img, DirtyGuest.P_FLAGS));
        assertEquals(DirtyGuest.Pacing.BUSY_LOOP, g.pacing());
        assertEquals(0xFFFF_FFFEL, g.delay());
        assertTrue(g.nominalPagesPerSecond().isEmpty());
        assertEquals(0x0800_0000L + 255 * 4096L, g.pageAddress(255));
        assertThrows(IndexOutOfBoundsException.class, () -> g.pageAddress(256));
        assertEquals(129, g.minimumRamMiB());

        DirtyGuest paced = g.withPeriodMicros(500);
        assertEquals(DirtyGuest.Pacing.HALT, paced.pacing());
        assertEquals(3, DirtyGuest.word(paced.image(), DirtyGuest.P_FLAGS));
        assertEquals(0x1234 * 2000.0, paced.nominalPagesPerSecond().orElseThrow(), 1e-6);
        DirtyGuest spin = paced.withPeriodMicros(250, DirtyGuest.Pacing.SPIN);
        assertEquals(DirtyGuest.Pacing.SPIN, spin.pacing());
        assertEquals(1, DirtyGuest.word(spin.image(), DirtyGuest.P_FLAGS));
        assertEquals(DirtyGuest.Pacing.SPIN, spin.withPeriodMicros(100).pacing(), "keeps the timed pacing");
        assertThrows(IllegalArgumentException.class, () -> g.withPeriodMicros(100, DirtyGuest.Pacing.BUSY_LOOP));

        // only the parameter words differ; the original is unchanged
        byte[] orig = base.image();
        assertEquals(DirtyGuest.LIGHT_BURST, base.burst());
        assertArrayEquals(Arrays.copyOfRange(orig, 0x20, DirtyGuest.IMAGE_SIZE),
                Arrays.copyOfRange(img, 0x20, DirtyGuest.IMAGE_SIZE));
    }

    @Test
    void presetsMatchTheDocumentedRates() {
        assertEquals(2000.0 / 0.6, DirtyGuest.light().nominalPagesPerSecond().orElseThrow(), 1e-6);
        assertEquals(16000.0 / 0.6, DirtyGuest.heavy().nominalPagesPerSecond().orElseThrow(), 1e-6);
        assertEquals(DirtyGuest.HEAVY_BURST, DirtyGuest.heavy().burst());
        assertEquals(16384, DirtyGuest.heavy().regionPages());
        assertEquals(128, DirtyGuest.heavy().minimumRamMiB());
    }

    @Test
    void invalidParametersAreRejected() {
        DirtyGuest g = DirtyGuest.load();
        assertThrows(IllegalArgumentException.class, () -> g.withBurst(0));
        assertThrows(IllegalArgumentException.class, () -> g.withDelay(-1));
        assertThrows(IllegalArgumentException.class, () -> g.withDelay(1L << 32));
        assertThrows(IllegalArgumentException.class, () -> g.withPeriodMicros(DirtyGuest.MAX_PERIOD_MICROS + 1));
        assertThrows(IllegalArgumentException.class, () -> g.withRegion(0x0400_0001L, 4096));
        assertThrows(IllegalArgumentException.class, () -> g.withRegion(0x0400_0000L, 100));
        assertThrows(IllegalArgumentException.class, () -> g.withRegion(0x0400_0000L, 0));
        assertThrows(IllegalArgumentException.class, () -> g.withRegion(0x7000, 4096));
        assertThrows(IllegalArgumentException.class, () -> g.withRegion(0xDFFF_F000L, 8192));
        assertThrows(IllegalArgumentException.class, () -> g.withMaxPasses(-1));
        assertThrows(IllegalArgumentException.class, () -> DirtyGuest.fromImage(new byte[4096]));
        assertThrows(IllegalArgumentException.class, () -> DirtyGuest.fromImage(new byte[DirtyGuest.IMAGE_SIZE]));
    }

    @Test
    void writeToProducesTheImage(@TempDir Path tmp) throws IOException {
        DirtyGuest g = DirtyGuest.heavy().withMaxPasses(2);
        Path file = g.writeTo(tmp.resolve("sub/guest.bin"));
        assertArrayEquals(g.image(), Files.readAllBytes(file));
        assertEquals(g.image().length, DirtyGuest.fromFile(file).image().length);
        try (var files = Files.list(file.getParent())) {
            assertEquals(1, files.count(), "no temp files left behind");
        }
    }

    @Test
    void statusParsesRealXpOutput() {
        DirtyGuest.Status s = DirtyGuest.status(XP_STATUS_RUNNING);
        assertEquals(DirtyGuest.MAGIC_RUNNING, s.magic());
        assertTrue(s.started());
        assertTrue(s.running());
        assertEquals(0x324, s.generation());
        assertEquals(0xc90, s.pagesWritten());
        assertEquals(0, s.passes());
        assertFalse(s.done());
        assertEquals(0xc90, s.cursor());
        assertEquals(4, s.burst());
        assertEquals(1200, s.delay());
        assertEquals(0x0400_0000L, s.regionStart());
        assertEquals(16384, s.regionPages());
        assertEquals(DirtyGuest.Pacing.HALT, s.pacing());
        assertEquals(0x0027b03f, s.tscTicksPerMs());
        assertEquals(0x002fa04b, s.periodTicks());
        assertEquals(0, s.lateResets());
        assertEquals(1, s.version());
        assertEquals(0x000f4527, s.apicCountsPerMs());
        assertEquals(0x2eb, s.timerInterrupts());
        assertEquals(4, s.calibrationRounds());
        assertEquals(0x5c32, s.calibrationErrorTicks());
        assertTrue(s.toString().contains("DRUN"), s.toString());

        DirtyGuest.Status done = DirtyGuest.status(cmd -> {
            assertEquals("xp /20wx 0x7000", cmd);
            return XP_STATUS_DONE;
        });
        assertTrue(done.done());
        assertFalse(done.running());
        assertEquals(DirtyGuest.MAGIC_DONE, done.magic());
        assertEquals(0x300, done.pagesWritten());
        assertEquals(0, done.version(), "missing trailing words read as 0");
        assertEquals(DirtyGuest.Pacing.BUSY_LOOP, done.pacing());
        assertFalse(DirtyGuest.status("00007000: 0x4c494146 0 0 0 0").running());
        assertTrue(DirtyGuest.status("00007000: 0x4c494146 0 0 0 0").failed());

        DirtyGuest.Status fresh = DirtyGuest.status("00007000: 0x00000000 0x00000000 0x00000000 0x00000000\n"
                + "00007010: 0x00000000\n");
        assertFalse(fresh.started());
    }

    @Test
    void recordsParse() {
        DirtyGuest g = DirtyGuest.load();
        DirtyGuest.PageRecord r = g.record(cmd -> {
            assertEquals("xp /4wx 0x4001000", cmd);
            return "0000000004001000: 0x00001001 0x00000001 0x00004002 0x59545244\r\n";
        }, 1);
        assertTrue(r.written());
        assertEquals(0x1001, r.generation());
        assertEquals(1, r.pageIndex());
        assertEquals(0x4002, r.progress());
        assertFalse(DirtyGuest.PageRecord.parse("04000000: 0x00000000 0x00000000 0x00000000 0x00000000").written());
        assertArrayEquals(new int[] {-1, 5, 6}, DirtyGuest.parseWords("7000: 0xffffffff 5\n7008: 6\n"));
        assertThrows(IllegalArgumentException.class, () -> DirtyGuest.parseWords("Cannot access memory"));
        assertThrows(IllegalArgumentException.class, () -> DirtyGuest.PageRecord.parse("7000: 0x1 0x2"));
    }
}
