package dev.multifdcolo.primary.export;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.primary.DirtyPages;
import dev.multifdcolo.primary.MigrationSender;
import dev.multifdcolo.primary.SendStats;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.encode.NoneMachine;
import dev.multifdcolo.wire.encode.StreamWriter;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.List;

/**
 * Hands an {@link ExportImage} (a replica's last committed checkpoint, or a precopy image) back to
 * a real QEMU as an ordinary precopy migration stream (PROTOCOL.md §7):
 *
 * <pre>
 *   QEVM v3, CONFIGURATION &lt;source machine type&gt;
 *   START "ram": MEM_SIZE + the block list, EOS
 *   PART  "ram": every page of every block (ZERO records for zero pages), EOS
 *   [SWITCHOVER_START]                  modern framing (10.0+ destinations)
 *   END   "ram": EOS
 *   the image's device sections verbatim (FULL sections + EOF)
 *   [VMDESCRIPTION]                     when the image has one
 * </pre>
 *
 * <p>{@link #toFile} / {@link #write} produce it as bytes (plain precopy: a QEMU loads it with
 * {@code -incoming "exec:cat FILE"} or {@code -incoming defer} + {@code migrate-incoming
 * exec:cat FILE}); {@link #live} sends it to a QEMU listening with {@code -incoming tcp:…}, plain
 * or multifd, through {@link MigrationSender} (whose configuration must match the destination's
 * capabilities; the machine type is always the image's).
 */
public final class Exporter {
    private Exporter() {}

    /** What an export wrote. */
    public record Stats(long bytes, long normalPages, long zeroPages, long nanos) {
        public String summary() {
            return String.format(java.util.Locale.ROOT, "%s in %d normal + %d zero pages, %.2f s",
                    SendStats.human(bytes), normalPages, zeroPages, nanos / 1e9);
        }
    }

    /**
     * Writes the stream to {@code file} (through a temporary file in the same directory, moved into
     * place when complete, so a QEMU never reads half a stream).
     */
    public static Stats toFile(ExportImage image, Path file, Framing framing) throws IOException {
        Path abs = file.toAbsolutePath();
        Path dir = abs.getParent();
        Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, abs.getFileName().toString(), ".part");
        try {
            Stats st;
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                st = write(image, ch, framing);
                ch.force(false);
            }
            Files.move(tmp, abs, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            return st;
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /**
     * Writes the plain precopy stream to {@code out} (not closed). {@code framing} decides only
     * whether SWITCHOVER_START is sent: MODERN for a 10.0+ destination, LEGACY for 7.2 (which
     * rejects that command).
     */
    public static Stats write(ExportImage image, WritableByteChannel out, Framing framing) throws IOException {
        long t0 = System.nanoTime();
        int ramId = ramSectionId(framing);
        StreamWriter w = StreamWriter.toChannel(out, 1 << 20);
        w.header().configuration(image.machine());
        GuestMemory mem = image.memory();
        List<RamBlock> blocks = mem.blocks();
        String[] names = new String[blocks.size()];
        long[] lengths = new long[blocks.size()];
        for (int i = 0; i < names.length; i++) {
            names[i] = blocks.get(i).name();
            lengths[i] = blocks.get(i).length();
        }
        w.sectionStart(ramId, Wire.RAM_IDSTR, 0, Wire.RAM_SECTION_VERSION).ramMemSize(names, lengths).ramEos().footer(ramId);
        w.sectionPart(ramId);
        long normal = 0;
        long zero = 0;
        for (RamBlock b : blocks) {
            MemorySegment img = b.guest();
            for (long off = 0; off < b.length(); off += Wire.PAGE_SIZE) {
                if (RamBlock.isZero(img, off)) {
                    w.ramZero(b.name(), off);
                    zero++;
                } else {
                    w.ramPage(b.name(), off, img, off);
                    normal++;
                }
            }
        }
        w.ramEos().footer(ramId);
        if (framing == Framing.MODERN) {
            w.switchoverStart();
        }
        w.sectionEnd(ramId).ramEos().footer(ramId);
        w.bytes(image.deviceSections());
        if (image.vmdesc() != null) {
            w.vmdescription(image.vmdesc());
        }
        w.flush();
        return new Stats(w.totalBytes(), normal, zero, System.nanoTime() - t0);
    }

    /** The stream as one byte array (tests, small images). */
    public static byte[] toBytes(ExportImage image, Framing framing) throws IOException {
        java.io.ByteArrayOutputStream bos = new java.io.ByteArrayOutputStream();
        write(image, java.nio.channels.Channels.newChannel(bos), framing);
        return bos.toByteArray();
    }

    /**
     * Sends the image live to a QEMU listening with {@code -incoming tcp:…} (or our receiver):
     * {@code cfg} says plain or multifd N, framing, compression and return path as the destination
     * expects; its machine type is replaced by the image's. With the return path, returns only
     * after the destination's SHUT(0), i.e. after it loaded the stream.
     */
    public static SendStats live(ExportImage image, SenderConfig cfg) throws IOException {
        SenderConfig c = cfg.machine().equals(image.machine()) ? cfg : cfg.toBuilder().machine(image.machine()).build();
        try (MigrationSender s = MigrationSender.connect(c, image.memory())) {
            s.setup();
            s.iterate(DirtyPages.all(image.memory()));
            s.complete(DirtyPages.none(), image.deviceSections(), image.vmdesc());
            return s.finish();
        }
    }

    /** The "ram" section id: what QEMU of that generation uses for {@code -M none} (any id is accepted). */
    static int ramSectionId(Framing framing) {
        return (framing == Framing.LEGACY ? NoneMachine.Flavor.QEMU_7_2 : NoneMachine.Flavor.QEMU_11_1).ramSectionId;
    }
}
