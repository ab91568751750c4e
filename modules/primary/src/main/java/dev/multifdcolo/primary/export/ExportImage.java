package dev.multifdcolo.primary.export;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.MemoryLimitException;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.wire.SectionType;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * What an export hands back to a real QEMU: the source's machine type, the committed RAM image
 * (every block of the source's MEM_SIZE list), the device sections of that image and the source's
 * VMDESCRIPTION.
 *
 * <p>{@code deviceSections} always end with the EOF byte: a COLO checkpoint's device-state blob
 * already does (QEMU's {@code qemu_save_device_state} puts it there), the device sections our
 * receiver kept from a precopy stream do not (the EOF was the end marker it looked for);
 * {@link #of} tells the two apart by where the last section footer sits and appends the EOF when
 * it is missing.
 *
 * @param machine        machine type name for the CONFIGURATION record (e.g. {@code pc-i440fx-11.1})
 * @param memory         the image; the caller keeps ownership (an export never closes it)
 * @param deviceSections FULL sections + EOF, verbatim
 * @param vmdesc         the VMDESCRIPTION JSON bytes, or null (none is sent)
 * @param epoch          the COLO checkpoint the image is, or -1 for a precopy image
 */
public record ExportImage(String machine, GuestMemory memory, byte[] deviceSections, byte[] vmdesc, long epoch) {

    public ExportImage {
        Objects.requireNonNull(machine, "machine");
        Objects.requireNonNull(memory, "memory");
        Objects.requireNonNull(deviceSections, "deviceSections");
        if (machine.isEmpty()) {
            throw new IllegalArgumentException("the machine type is required");
        }
        if (deviceSections.length == 0 || deviceSections[deviceSections.length - 1] != SectionType.EOF) {
            throw new IllegalArgumentException("device sections must end with the EOF byte");
        }
        if (memory.blocks().isEmpty()) {
            throw new IllegalArgumentException("the image has no RAM blocks");
        }
    }

    /**
     * An image from what a receiver kept: {@code deviceState} with or without its EOF (see the
     * class comment), {@code vmdesc} as text or null.
     */
    public static ExportImage of(String machine, GuestMemory memory, byte[] deviceState, String vmdesc, long epoch) {
        return new ExportImage(machine, memory, withEof(deviceState),
                vmdesc == null ? null : vmdesc.getBytes(StandardCharsets.UTF_8), epoch);
    }

    /**
     * The device sections ending with exactly one EOF byte. Verbatim sections end with a footer
     * ({@code 0x7e} + be32 section id): if the footer is the last 5 bytes the EOF is missing; if it
     * is followed by one 0 byte, that byte is the EOF. An empty state becomes the lone EOF.
     */
    public static byte[] withEof(byte[] deviceState) {
        Objects.requireNonNull(deviceState, "deviceState");
        int n = deviceState.length;
        if (n == 0) {
            return new byte[] {SectionType.EOF};
        }
        if (n == 1 && deviceState[0] == SectionType.EOF) {
            return deviceState.clone();
        }
        boolean footerLast = n >= 5 && deviceState[n - 5] == (byte) SectionType.FOOTER;
        boolean footerThenEof = n >= 6 && deviceState[n - 6] == (byte) SectionType.FOOTER
                && deviceState[n - 1] == SectionType.EOF;
        if (deviceState[0] != SectionType.FULL || (!footerLast && !footerThenEof)) {
            throw new IllegalArgumentException("the device state is not FULL sections ending with a footer"
                    + " (first byte 0x" + Integer.toHexString(deviceState[0] & 0xff) + ", " + n + " bytes)");
        }
        if (footerThenEof && !footerLast) {
            return deviceState.clone();
        }
        if (footerLast && !footerThenEof) {
            byte[] b = Arrays.copyOf(deviceState, n + 1);
            b[n] = SectionType.EOF;
            return b;
        }
        // both patterns: "7e 7e ?? ?? ?? 00" — a footer whose id starts with 0x7e and ends with 0
        // (no EOF), or a footer of id 0x7e????00 — section ids are small, so take the footer as last
        throw new IllegalArgumentException("cannot tell whether the device state ends with EOF");
    }

    /** A raw block file to load: the block's name and its image file (the file size is the block size). */
    public record BlockFile(String name, Path file, long size) {}

    /**
     * Loads raw block files (an image directory's blocks) into fresh anonymous memory. The caller
     * closes the returned image's memory.
     */
    public static ExportImage load(String machine, List<BlockFile> blocks, byte[] deviceState, String vmdesc, long epoch)
            throws IOException {
        List<BlockSpec> specs = new ArrayList<>();
        for (BlockFile b : blocks) {
            long size = Files.size(b.file());
            if (size != b.size()) {
                throw new IOException(b.file() + " holds " + size + " bytes, the manifest says " + b.size());
            }
            specs.add(new BlockSpec(b.name(), b.size()));
        }
        GuestMemory mem;
        try {
            mem = GuestMemory.allocate(specs, Long.MAX_VALUE, Backing.anonymous());
        } catch (MemoryLimitException e) {
            throw new IOException(e.getMessage(), e);
        }
        try {
            for (BlockFile b : blocks) {
                RamBlock rb = mem.block(b.name());
                try (FileChannel ch = FileChannel.open(b.file(), StandardOpenOption.READ)) {
                    ByteBuffer dst = rb.guest().asByteBuffer();
                    while (dst.hasRemaining()) {
                        if (ch.read(dst) < 0) {
                            throw new IOException(b.file() + " ended early");
                        }
                    }
                }
            }
            return of(machine, mem, deviceState, vmdesc, epoch);
        } catch (IOException | RuntimeException e) {
            mem.close();
            throw e;
        }
    }
}
