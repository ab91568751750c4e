package dev.multifdcolo.wire.compress;

import com.github.luben.zstd.ZstdInputStream;
import com.github.luben.zstd.ZstdOutputStream;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Wire;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import java.util.zip.DeflaterOutputStream;
import java.util.zip.InflaterInputStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Our compressor into our decompressor over long per-channel streams, and cross-checks with zlib/zstd's own streams. */
class RoundTripTest {
    static final int PAGE = Wire.PAGE_SIZE;
    static final int MAX_PACKET = Wire.PAGES_PER_PACKET * PAGE;

    /** One packet as it went out: the page bytes and the compressed payload. */
    record Packet(byte[] pages, byte[] payload) {}

    static Stream<Arguments> methodsAndLevels() {
        return Stream.of(Arguments.of(Compression.ZLIB, 1), Arguments.of(Compression.ZLIB, 9),
                Arguments.of(Compression.ZSTD, 1), Arguments.of(Compression.ZSTD, 9));
    }

    /** Many packets of 1..128 mixed pages on one stream, through every buffer combination. */
    @ParameterizedTest
    @MethodSource("methodsAndLevels")
    void manyPacketsOnOneStream(Compression c, int level) {
        List<Packet> sent = compressStream(c, level, 150, 42);
        // the same stream decodes whatever buffer kinds carry it, packet after packet
        try (PageDecompressor d = PageDecompressor.create(c)) {
            ByteBuffer directOut = ByteBuffer.allocateDirect(MAX_PACKET + 16);
            for (int i = 0; i < sent.size(); i++) {
                Packet p = sent.get(i);
                ByteBuffer in = switch (i % 4) {
                    case 0 -> ByteBuffer.wrap(p.payload());
                    case 1 -> direct(p.payload());
                    case 2 -> ByteBuffer.wrap(p.payload()).asReadOnlyBuffer();
                    default -> offsetHeap(p.payload(), 7);
                };
                ByteBuffer out = switch (i % 3) {
                    case 0 -> ByteBuffer.allocate(p.pages().length);
                    case 1 -> directOut.clear().position(16).limit(16 + p.pages().length);
                    default -> offsetHeap(new byte[p.pages().length], 13);
                };
                int start = out.position();
                d.decompress(in, out);
                assertFalse(in.hasRemaining());
                assertFalse(out.hasRemaining());
                byte[] got = new byte[p.pages().length];
                out.get(start, got);
                assertArrayEquals(p.pages(), got, "packet " + i);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("methodsAndLevels")
    void wireShapeMatchesQemu(Compression c, int level) {
        List<Packet> sent = compressStream(c, level, 20, 7);
        byte[] first = sent.getFirst().payload();
        if (c == Compression.ZLIB) {
            assertEquals(0x78, first[0] & 0xff);
            assertEquals(level == 1 ? 0x01 : 0xda, first[1] & 0xff);
            for (Packet p : sent) {
                byte[] b = p.payload();
                assertArrayEquals(new byte[] {0, 0, (byte) 0xff, (byte) 0xff}, Arrays.copyOfRange(b, b.length - 4, b.length));
            }
        } else {
            assertArrayEquals(new byte[] {0x28, (byte) 0xb5, 0x2f, (byte) 0xfd}, Arrays.copyOf(first, 4));
            // frame header descriptor: no checksum (bit 2), no content size (bits 6-7), not single segment
            assertEquals(0, first[4] & 0b1110_0100);
            for (Packet p : sent.subList(1, sent.size())) {
                assertNotEquals(0x28, p.payload()[0] & 0xff, "later packets continue the frame");
            }
        }
        assertTrue(sent.stream().allMatch(p -> p.payload().length <= PageCompressor.maxCompressedSize(c, p.pages().length)));
    }

    /** Cross-check: zlib / zstd-jni stream decoders read the concatenated packets as one stream. */
    @ParameterizedTest
    @MethodSource("methodsAndLevels")
    void libraryStreamDecodersReadOurStream(Compression c, int level) throws IOException {
        List<Packet> sent = compressStream(c, level, 60, 99);
        ByteArrayOutputStream wire = new ByteArrayOutputStream();
        ByteArrayOutputStream pages = new ByteArrayOutputStream();
        for (Packet p : sent) {
            wire.write(p.payload());
            pages.write(p.pages());
        }
        byte[] expected = pages.toByteArray();
        InputStream in = new ByteArrayInputStream(wire.toByteArray());
        try (InputStream dec = c == Compression.ZLIB ? new InflaterInputStream(in)
                : new ZstdInputStream(in).setContinuous(true)) {
            assertArrayEquals(expected, dec.readNBytes(expected.length));
        }
    }

    /** Cross-check the other way: streams written by zlib / zstd-jni with a flush per packet decode with ours. */
    @ParameterizedTest
    @MethodSource("methodsAndLevels")
    void ourDecoderReadsLibraryFlushedStreams(Compression c, int level) throws IOException {
        SplittableRandom rnd = new SplittableRandom(5);
        ByteArrayOutputStream wire = new ByteArrayOutputStream();
        List<byte[]> packets = new ArrayList<>();
        List<Integer> cuts = new ArrayList<>();
        OutputStream enc = c == Compression.ZLIB
                ? new DeflaterOutputStream(wire, new java.util.zip.Deflater(level), 8192, true)
                : new ZstdOutputStream(wire, level);
        for (int i = 0; i < 40; i++) {
            byte[] pages = Pages.mixed(rnd.nextInt(1, Wire.PAGES_PER_PACKET + 1), rnd.nextLong());
            enc.write(pages);
            enc.flush();
            packets.add(pages);
            cuts.add(wire.size());
        }
        byte[] all = wire.toByteArray();
        try (PageDecompressor d = PageDecompressor.create(c)) {
            int from = 0;
            for (int i = 0; i < packets.size(); i++) {
                ByteBuffer out = ByteBuffer.allocate(packets.get(i).length);
                d.decompress(ByteBuffer.wrap(all, from, cuts.get(i) - from), out);
                assertArrayEquals(packets.get(i), out.array(), "packet " + i);
                from = cuts.get(i);
            }
        }
    }

    /** maxCompressedSize holds for incompressible pages at every level QEMU allows. */
    @Test
    void boundHoldsForIncompressibleData() {
        for (Compression c : new Compression[] {Compression.ZLIB, Compression.ZSTD}) {
            int maxLevel = c == Compression.ZLIB ? 9 : 20;
            for (int level = 0; level <= maxLevel; level++) {
                try (PageCompressor comp = PageCompressor.create(c, level)) {
                    int[] sizes = {1, 3, 128, 128, 17};
                    for (int k = 0; k < sizes.length; k++) {
                        int pages = sizes[k];
                        byte[] in = Pages.random(pages * PAGE, level * 31L + k);
                        int bound = PageCompressor.maxCompressedSize(c, in.length);
                        ByteBuffer out = ByteBuffer.allocate(bound);
                        int n = comp.compress(ByteBuffer.wrap(in), out);
                        assertTrue(n <= bound, c + " level " + level + ": " + n + " > " + bound);
                        assertTrue(n > in.length, c + " level " + level + ": random data compressed to " + n);
                    }
                }
            }
        }
        assertEquals(100, PageCompressor.maxCompressedSize(Compression.NONE, 100));
    }

    @Test
    void emptyInputLeavesTheStreamUntouched() {
        for (Compression c : new Compression[] {Compression.ZLIB, Compression.ZSTD}) {
            byte[] pages = Pages.mixed(3, 1);
            ByteBuffer out = ByteBuffer.allocate(PageCompressor.maxCompressedSize(c, pages.length));
            try (PageCompressor comp = PageCompressor.create(c, 1)) {
                assertEquals(0, comp.compress(ByteBuffer.allocate(0), out));
                assertEquals(0, out.position());
                int n = comp.compress(ByteBuffer.wrap(pages), out);
                try (PageDecompressor d = PageDecompressor.create(c)) {
                    ByteBuffer dec = ByteBuffer.allocate(pages.length);
                    d.decompress(out.flip().limit(n), dec);
                    assertArrayEquals(pages, dec.array());
                }
            }
        }
    }

    /** A too-small output is refused before anything is written; the stream goes on intact. */
    @ParameterizedTest
    @EnumSource(value = Compression.class, names = {"ZLIB", "ZSTD"})
    void tooSmallOutputIsRefusedUpFront(Compression c) {
        byte[] a = Pages.mixed(8, 3);
        byte[] b = Pages.mixed(8, 4);
        try (PageCompressor comp = PageCompressor.create(c, 1);
             PageDecompressor d = PageDecompressor.create(c)) {
            ByteBuffer small = ByteBuffer.allocate(PageCompressor.maxCompressedSize(c, a.length) - 1);
            ByteBuffer pa = ByteBuffer.wrap(a);
            assertThrows(IllegalArgumentException.class, () -> comp.compress(pa, small));
            assertEquals(0, small.position());
            assertEquals(0, pa.position());
            for (byte[] pages : new byte[][] {a, b}) {
                ByteBuffer out = ByteBuffer.allocate(PageCompressor.maxCompressedSize(c, pages.length));
                comp.compress(ByteBuffer.wrap(pages), out);
                ByteBuffer dec = ByteBuffer.allocate(pages.length);
                d.decompress(out.flip(), dec);
                assertArrayEquals(pages, dec.array());
            }
        }
    }

    @Test
    void factoriesCheckArguments() {
        assertThrows(IllegalArgumentException.class, () -> PageDecompressor.create(Compression.NONE));
        assertThrows(IllegalArgumentException.class, () -> PageCompressor.create(Compression.NONE, 1));
        assertThrows(IllegalArgumentException.class, () -> PageCompressor.create(Compression.ZLIB, 10));
        assertThrows(IllegalArgumentException.class, () -> PageCompressor.create(Compression.ZLIB, -1));
        assertThrows(IllegalArgumentException.class, () -> PageCompressor.create(Compression.ZSTD, 21));
        assertThrows(IllegalArgumentException.class, () -> PageCompressor.create(Compression.ZSTD, -1));
        try (PageCompressor z = PageCompressor.create(Compression.ZSTD, 0)) {
            assertEquals(Compression.ZSTD, z.compression());
        }
        try (PageDecompressor z = PageDecompressor.create(Compression.ZLIB)) {
            assertEquals(Compression.ZLIB, z.compression());
        }
    }

    @Test
    void closedInstancesRefuseWork() {
        PageCompressor comp = PageCompressor.create(Compression.ZSTD, 1);
        comp.close();
        comp.close();
        assertThrows(IllegalStateException.class, () -> comp.compress(ByteBuffer.allocate(PAGE), ByteBuffer.allocate(2 * PAGE)));
        PageDecompressor d = PageDecompressor.create(Compression.ZLIB);
        d.close();
        d.close();
        assertThrows(IllegalStateException.class, () -> d.decompress(ByteBuffer.allocate(4), ByteBuffer.allocate(PAGE)));
    }

    // ------------------------------------------------------------------ helpers

    /** Compresses {@code packets} packets of 1..128 mixed pages on one stream, mixing buffer kinds. */
    static List<Packet> compressStream(Compression c, int level, int packets, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        List<Packet> sent = new ArrayList<>();
        ByteBuffer directPages = ByteBuffer.allocateDirect(MAX_PACKET);
        ByteBuffer directOut = ByteBuffer.allocateDirect(PageCompressor.maxCompressedSize(c, MAX_PACKET));
        ByteBuffer heapOut = ByteBuffer.allocate(PageCompressor.maxCompressedSize(c, MAX_PACKET));
        try (PageCompressor comp = PageCompressor.create(c, level)) {
            for (int i = 0; i < packets; i++) {
                int n = i % 10 == 0 ? Wire.PAGES_PER_PACKET : rnd.nextInt(1, Wire.PAGES_PER_PACKET + 1);
                byte[] pages = Pages.mixed(n, rnd.nextLong());
                ByteBuffer in = switch (i % 3) {
                    case 0 -> ByteBuffer.wrap(pages);
                    case 1 -> directPages.clear().put(pages).flip();
                    default -> ByteBuffer.wrap(pages).asReadOnlyBuffer();
                };
                ByteBuffer out = (i % 2 == 0 ? heapOut : directOut).clear();
                int len = comp.compress(in, out);
                assertFalse(in.hasRemaining());
                assertEquals(len, out.position());
                byte[] payload = new byte[len];
                out.get(0, payload);
                sent.add(new Packet(pages, payload));
            }
        }
        return sent;
    }

    static ByteBuffer direct(byte[] b) {
        return ByteBuffer.allocateDirect(b.length).put(b).flip();
    }

    /** A heap buffer whose array offset is not 0 (a slice), holding {@code b}. */
    static ByteBuffer offsetHeap(byte[] b, int skew) {
        byte[] backing = new byte[b.length + skew + 5];
        System.arraycopy(b, 0, backing, skew, b.length);
        return ByteBuffer.wrap(backing).position(skew).slice().limit(b.length);
    }
}
