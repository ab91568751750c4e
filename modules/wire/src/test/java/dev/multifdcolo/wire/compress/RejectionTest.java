package dev.multifdcolo.wire.compress;

import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ReadOnlyBufferException;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * What the decoders reject and with which rule:
 * <ul>
 *   <li>payload ends before the pages are complete (truncated): {@link Rule#DECOMPRESS_SIZE};</li>
 *   <li>payload decodes to more than the pages (incl. output the decoder still holds back, and
 *       decompression bombs): {@link Rule#DECOMPRESS_SIZE}, nothing written past the limit;</li>
 *   <li>data the library rejects (bad zlib header, invalid block type, bad zstd magic, reserved
 *       block type, zstd window above the cap), a finished zlib stream, bytes left over that
 *       produce nothing: {@link Rule#DECOMPRESS_CORRUPT};</li>
 *   <li>random damage: either of the two, depending on where it lands (or nothing, when it hits
 *       a stored/raw block: the data is then just wrong, as with QEMU).</li>
 * </ul>
 */
class RejectionTest {
    static final int PAGE = Wire.PAGE_SIZE;
    static final byte SENTINEL = 0x5A;

    // ------------------------------------------------------------------ size

    @ParameterizedTest
    @EnumSource(value = Compression.class, names = {"ZLIB", "ZSTD"})
    void truncatedPayloadIsTooShort(Compression c) {
        byte[] pages = Pages.mixed(16, 11);
        byte[] payload = compress(c, pages);
        try (PageDecompressor d = PageDecompressor.create(c)) {
            ProtocolException e = assertThrows(ProtocolException.class, () -> d.decompress(
                    ByteBuffer.wrap(payload, 0, payload.length / 2), ByteBuffer.allocate(pages.length)));
            assertEquals(Rule.DECOMPRESS_SIZE, e.rule());
            // a broken stream stays broken
            assertThrows(IllegalStateException.class,
                    () -> d.decompress(ByteBuffer.wrap(payload), ByteBuffer.allocate(pages.length)));
        }
    }

    /** zstd: losing even the last byte leaves the last block incomplete. */
    @Test
    void zstdPayloadShortByOneByte() {
        byte[] pages = Pages.mixed(4, 12);
        byte[] payload = compress(Compression.ZSTD, pages);
        assertRule(Rule.DECOMPRESS_SIZE, Compression.ZSTD, Arrays.copyOf(payload, payload.length - 1), pages.length);
    }

    @ParameterizedTest
    @EnumSource(value = Compression.class, names = {"ZLIB", "ZSTD"})
    void emptyPayloadIsTooShort(Compression c) {
        assertRule(Rule.DECOMPRESS_SIZE, c, new byte[0], PAGE);
    }

    /** Two pages of data declared as one page: rejected, and the byte after the limit untouched. */
    @ParameterizedTest
    @EnumSource(value = Compression.class, names = {"ZLIB", "ZSTD"})
    void morePagesThanDeclared(Compression c) {
        for (long seed = 0; seed < 6; seed++) {
            byte[] pages = Pages.mixed(2, seed);
            assertRuleGuarded(Rule.DECOMPRESS_SIZE, c, compress(c, pages), PAGE);
        }
        // incompressible: zlib stored blocks, zstd raw blocks
        byte[] random = Pages.random(2 * PAGE, 3);
        assertRuleGuarded(Rule.DECOMPRESS_SIZE, c, compress(c, random), PAGE);
        // a single extra byte of data is caught too
        assertRuleGuarded(Rule.DECOMPRESS_SIZE, c, compress(c, Pages.random(PAGE + 1, 4)), PAGE);
    }

    /**
     * zlib can stop in the middle of a back-reference with every input byte already consumed: the
     * rest of the copy is pending inside the inflater. Checking only for leftover input would
     * miss it (and QEMU would write it into the next packet's first page); we probe always.
     */
    @Test
    void zlibPendingOutputWithoutLeftoverInput() {
        // 1 literal + 16 matches of 258 = 4129 bytes, the stream ends right after the last match
        byte[] stream = ZlibBomb.build(1, 16, false);
        try (ZlibPageDecompressor d = new ZlibPageDecompressor()) {
            ByteBuffer out = guarded(PAGE);
            ProtocolException e = assertThrows(ProtocolException.class,
                    () -> d.decompress(ByteBuffer.wrap(stream), out));
            assertEquals(Rule.DECOMPRESS_SIZE, e.rule());
            assertEquals(0, d.leftoverInputPackets, "all input was consumed before the probe");
            assertGuardIntact(out);
        }
    }

    /** zstd: a whole block is decoded into the window; what does not fit is held back. */
    @Test
    void zstdHeldBackOutputWithoutLeftoverInput() {
        byte[] frame = ZstdFrames.rle(19, 1, 2 * PAGE);
        try (ZstdPageDecompressor d = new ZstdPageDecompressor()) {
            ByteBuffer out = guarded(PAGE);
            ProtocolException e = assertThrows(ProtocolException.class,
                    () -> d.decompress(ByteBuffer.wrap(frame), out));
            assertEquals(Rule.DECOMPRESS_SIZE, e.rule());
            assertEquals(0, d.leftoverInputPackets, "all input was consumed before the probe");
            assertGuardIntact(out);
        }
    }

    // ------------------------------------------------------------------ bombs

    /**
     * ~1000 MiB from a ~1 MB payload (deflate's ratio tops out near 1032:1, so "GBs" need about a
     * megabyte): stopped after one page.
     */
    @Test
    void zlibBombStopsAtTheBound() {
        int matches = (int) ((1000L << 20) / 258);
        byte[] bomb = ZlibBomb.build(1, matches, true);
        assertTrue(bomb.length <= PageDecompressor.MAX_PAYLOAD_SIZE, "bomb fits in a packet: " + bomb.length);
        long t0 = System.nanoTime();
        try (PageDecompressor d = PageDecompressor.create(Compression.ZLIB)) {
            ByteBuffer out = guarded(PAGE);
            ProtocolException e = assertThrows(ProtocolException.class, () -> d.decompress(ByteBuffer.wrap(bomb), out));
            assertEquals(Rule.DECOMPRESS_SIZE, e.rule());
            assertGuardIntact(out);
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms < 1000, "took " + ms + " ms");
        // sanity: the bomb is a valid stream (a bounded JDK inflate proves it expands)
        java.util.zip.Inflater inf = new java.util.zip.Inflater();
        inf.setInput(bomb);
        byte[] probe = new byte[1 << 20];
        try {
            assertEquals(probe.length, inf.inflate(probe));
        } catch (java.util.zip.DataFormatException ex) {
            fail(ex);
        } finally {
            inf.end();
        }
    }

    /** 4 GiB from 128 KiB of RLE blocks: stopped after one page. */
    @Test
    void zstdBombStopsAtTheBound() {
        byte[] bomb = ZstdFrames.rle(19, 32768, 128 << 10);
        assertEquals(4L << 30, 32768L * (128 << 10));
        long t0 = System.nanoTime();
        try (PageDecompressor d = PageDecompressor.create(Compression.ZSTD)) {
            ByteBuffer out = guarded(PAGE);
            ProtocolException e = assertThrows(ProtocolException.class, () -> d.decompress(ByteBuffer.wrap(bomb), out));
            assertEquals(Rule.DECOMPRESS_SIZE, e.rule());
            assertGuardIntact(out);
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms < 1000, "took " + ms + " ms");
    }

    @Test
    void payloadLargerThanQemuAcceptsIsRefused() {
        byte[] big = new byte[PageDecompressor.MAX_PAYLOAD_SIZE + 1];
        assertRule(Rule.PACKET_PAYLOAD_SIZE, Compression.ZLIB, big, PAGE);
        assertRule(Rule.PACKET_PAYLOAD_SIZE, Compression.ZSTD, big, PAGE);
        assertEquals(Rule.PACKET_PAYLOAD_SIZE, assertThrows(ProtocolException.class,
                () -> PageDecompressor.checkedPayloadSize(0, 1)).rule());
        assertEquals(Rule.PACKET_PAYLOAD_SIZE, assertThrows(ProtocolException.class,
                () -> PageDecompressor.checkedPayloadSize(-1, 1)).rule());
        assertEquals(Rule.PACKET_PAYLOAD_SIZE, assertThrows(ProtocolException.class,
                () -> PageDecompressor.checkedPayloadSize(PageDecompressor.MAX_PAYLOAD_SIZE + 1, 128)).rule());
        assertEquals(PageDecompressor.MAX_PAYLOAD_SIZE,
                PageDecompressor.checkedPayloadSize(PageDecompressor.MAX_PAYLOAD_SIZE, 128));
    }

    // ------------------------------------------------------------------ corrupt

    @Test
    void zlibBadHeader() {
        byte[] payload = compress(Compression.ZLIB, Pages.mixed(2, 1));
        payload[1] ^= 1; // FCHECK no longer makes the header a multiple of 31
        assertRule(Rule.DECOMPRESS_CORRUPT, Compression.ZLIB, payload, 2 * PAGE);
    }

    @Test
    void zlibInvalidBlockType() {
        // header, then BFINAL=1 BTYPE=11 (reserved)
        assertRule(Rule.DECOMPRESS_CORRUPT, Compression.ZLIB, new byte[] {0x78, 0x01, 0x07, 0, 0, 0}, PAGE);
    }

    @Test
    void zlibFinishedStream() {
        java.util.zip.Deflater def = new java.util.zip.Deflater(1);
        def.setInput(new byte[PAGE]);
        def.finish();
        byte[] buf = new byte[256];
        int n = def.deflate(buf);
        def.end();
        // exactly the page, then Z_STREAM_END: QEMU never finishes, and treats it as an error
        assertRule(Rule.DECOMPRESS_CORRUPT, Compression.ZLIB, Arrays.copyOf(buf, n), PAGE);
    }

    /** A second packet whose stored-block lengths do not match (LEN vs NLEN). */
    @Test
    void zlibStoredLengthMismatch() {
        byte[] first = compress(Compression.ZLIB, Pages.random(PAGE, 1));
        try (PageDecompressor d = PageDecompressor.create(Compression.ZLIB)) {
            d.decompress(ByteBuffer.wrap(first), ByteBuffer.allocate(PAGE));
            // BFINAL=0 BTYPE=00, then LEN=4096 and a wrong NLEN
            byte[] bad = {0x00, 0x00, 0x10, 0x00, 0x00};
            ProtocolException e = assertThrows(ProtocolException.class,
                    () -> d.decompress(ByteBuffer.wrap(bad), ByteBuffer.allocate(PAGE)));
            assertEquals(Rule.DECOMPRESS_CORRUPT, e.rule());
        }
    }

    @Test
    void zstdBadMagic() {
        byte[] payload = compress(Compression.ZSTD, Pages.mixed(2, 1));
        payload[0] ^= 1;
        assertRule(Rule.DECOMPRESS_CORRUPT, Compression.ZSTD, payload, 2 * PAGE);
    }

    @Test
    void zstdReservedBlockType() {
        assertRule(Rule.DECOMPRESS_CORRUPT, Compression.ZSTD, ZstdFrames.block(19, 3, PAGE, new byte[0]), PAGE);
    }

    /** The window cap: 2^26 is refused before anything is allocated, 2^25 (level 20) is fine. */
    @Test
    void zstdWindowCap() {
        byte[] data = Pages.random(PAGE, 9);
        assertRule(Rule.DECOMPRESS_CORRUPT, Compression.ZSTD, ZstdFrames.block(26, 0, PAGE, data), PAGE);
        try (PageDecompressor d = PageDecompressor.create(Compression.ZSTD)) {
            ByteBuffer out = ByteBuffer.allocate(PAGE);
            d.decompress(ByteBuffer.wrap(ZstdFrames.block(PageDecompressor.ZSTD_WINDOW_LOG_MAX, 0, PAGE, data)), out);
            assertArrayEquals(data, out.array());
        }
        // our own level 20 stays within the cap
        byte[] pages = Pages.mixed(128, 20);
        try (PageCompressor comp = PageCompressor.create(Compression.ZSTD, 20);
             PageDecompressor d = PageDecompressor.create(Compression.ZSTD)) {
            ByteBuffer out = ByteBuffer.allocate(PageCompressor.maxCompressedSize(Compression.ZSTD, pages.length));
            comp.compress(ByteBuffer.wrap(pages), out);
            ByteBuffer dec = ByteBuffer.allocate(pages.length);
            d.decompress(out.flip(), dec);
            assertArrayEquals(pages, dec.array());
        }
    }

    /**
     * Random damage to the second packet of a stream: whatever happens, only a
     * {@link ProtocolException} with one of the two rules (or silent success when the damage hits
     * stored/raw data), and never a write past the limit.
     */
    @ParameterizedTest
    @EnumSource(value = Compression.class, names = {"ZLIB", "ZSTD"})
    void randomDamageIsContained(Compression c) {
        SplittableRandom rnd = new SplittableRandom(77);
        byte[] p1 = Pages.mixed(8, 1);
        byte[] p2 = Pages.mixed(8, 2);
        byte[][] payloads = compressStream(c, p1, p2);
        int rejected = 0;
        for (int round = 0; round < 300; round++) {
            byte[] bad = payloads[1].clone();
            for (int k = rnd.nextInt(1, 4); k > 0; k--) {
                bad[rnd.nextInt(bad.length)] ^= (byte) rnd.nextInt(1, 256);
            }
            try (PageDecompressor d = PageDecompressor.create(c)) {
                d.decompress(ByteBuffer.wrap(payloads[0]), ByteBuffer.allocate(p1.length));
                ByteBuffer out = guarded(p2.length);
                try {
                    d.decompress(ByteBuffer.wrap(bad), out);
                } catch (ProtocolException e) {
                    assertTrue(e.rule() == Rule.DECOMPRESS_SIZE || e.rule() == Rule.DECOMPRESS_CORRUPT, e.getMessage());
                    rejected++;
                }
                assertGuardIntact(out);
            }
        }
        assertTrue(rejected > 30, "rejected " + rejected);
    }

    @Test
    void outputMisuse() {
        try (PageDecompressor d = PageDecompressor.create(Compression.ZSTD)) {
            assertThrows(IllegalArgumentException.class, () -> d.decompress(ByteBuffer.allocate(4), ByteBuffer.allocate(0)));
            assertThrows(ReadOnlyBufferException.class,
                    () -> d.decompress(ByteBuffer.allocate(4), ByteBuffer.allocate(PAGE).asReadOnlyBuffer()));
        }
        try (PageDecompressor d = PageDecompressor.create(Compression.ZLIB)) {
            assertThrows(ReadOnlyBufferException.class,
                    () -> d.decompress(ByteBuffer.allocate(4), ByteBuffer.allocate(PAGE).asReadOnlyBuffer()));
        }
    }

    // ------------------------------------------------------------------ helpers

    static byte[] compress(Compression c, byte[] pages) {
        return compressStream(c, pages)[0];
    }

    static byte[][] compressStream(Compression c, byte[]... packets) {
        byte[][] out = new byte[packets.length][];
        try (PageCompressor comp = PageCompressor.create(c, 1)) {
            for (int i = 0; i < packets.length; i++) {
                ByteBuffer b = ByteBuffer.allocate(PageCompressor.maxCompressedSize(c, packets[i].length));
                int n = comp.compress(ByteBuffer.wrap(packets[i]), b);
                out[i] = Arrays.copyOf(b.array(), n);
            }
        }
        return out;
    }

    static void assertRule(Rule rule, Compression c, byte[] payload, int outputBytes) {
        try (PageDecompressor d = PageDecompressor.create(c)) {
            ProtocolException e = assertThrows(ProtocolException.class,
                    () -> d.decompress(ByteBuffer.wrap(payload), ByteBuffer.allocate(outputBytes)));
            assertEquals(rule, e.rule(), e.getMessage());
        }
    }

    /** As {@link #assertRule}, with sentinel bytes right after the output's limit. */
    static void assertRuleGuarded(Rule rule, Compression c, byte[] payload, int outputBytes) {
        for (boolean direct : new boolean[] {false, true}) {
            try (PageDecompressor d = PageDecompressor.create(c)) {
                ByteBuffer out = direct ? guardedDirect(outputBytes) : guarded(outputBytes);
                ProtocolException e = assertThrows(ProtocolException.class,
                        () -> d.decompress(ByteBuffer.wrap(payload), out));
                assertEquals(rule, e.rule(), e.getMessage());
                assertGuardIntact(out);
            }
        }
    }

    static final int GUARD = 4 * PAGE;

    /** {@code size} bytes of room, followed (past the limit) by {@link #GUARD} sentinel bytes. */
    static ByteBuffer guarded(int size) {
        byte[] backing = new byte[size + GUARD];
        Arrays.fill(backing, SENTINEL);
        return ByteBuffer.wrap(backing, 0, size);
    }

    static ByteBuffer guardedDirect(int size) {
        ByteBuffer b = ByteBuffer.allocateDirect(size + GUARD);
        while (b.hasRemaining()) {
            b.put(SENTINEL);
        }
        return b.clear().limit(size);
    }

    static void assertGuardIntact(ByteBuffer out) {
        ByteBuffer all = out.duplicate().limit(out.capacity());
        for (int i = out.limit(); i < out.capacity(); i++) {
            assertEquals(SENTINEL, all.get(i), "byte written past the limit at " + (i - out.limit()));
        }
    }

    /**
     * A zlib stream (with header) of one dynamic-Huffman block built for maximum expansion:
     * literal/length code {285: "0", 0: "10", 256: "11"} and a single distance code {0: "0"}, so
     * every match of 258 bytes at distance 1 costs 2 bits, i.e. two zero bits.
     */
    static final class ZlibBomb {
        private ZlibBomb() {}

        /**
         * @param literals zero bytes written as literals first
         * @param matches  258-byte copies after them
         * @param tail     end the block and add the {@code 00 00 ff ff} sync-flush marker; without it
         *                 the stream stops right after the last match
         */
        static byte[] build(int literals, int matches, boolean tail) {
            Bits w = new Bits();
            w.bits(0x78, 8).bits(0x01, 8);        // zlib header, level 1
            w.bits(0, 1).bits(2, 2);              // BFINAL=0, BTYPE=dynamic
            w.bits(29, 5).bits(0, 5).bits(14, 4); // HLIT=286 codes, HDIST=1, HCLEN=18
            // code-length code lengths in the order 16,17,18,0,8,7,9,6,10,5,11,4,12,3,13,2,14,1
            int[] clOrder = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1};
            for (int sym : clOrder) {
                w.bits(sym == 18 ? 1 : (sym == 1 || sym == 2) ? 2 : 0, 3);
            }
            // code-length code: 18 -> "0", 1 -> "10", 2 -> "11"
            w.code(0b11, 2);                                  // lit 0: length 2
            w.code(0b0, 1).bits(138 - 11, 7);                 // lits 1..138: 0
            w.code(0b0, 1).bits(117 - 11, 7);                 // lits 139..255: 0
            w.code(0b11, 2);                                  // 256: length 2
            w.code(0b0, 1).bits(28 - 11, 7);                  // 257..284: 0
            w.code(0b10, 2);                                  // 285: length 1
            w.code(0b10, 2);                                  // distance 0: length 1
            for (int i = 0; i < literals; i++) {
                w.code(0b10, 2);                              // literal 0
            }
            w.zeros(2L * matches);                            // (285, dist 0) pairs
            if (tail) {
                w.code(0b11, 2);                              // end of block
                w.bits(0, 3).align().bits(0, 16).bits(0xffff, 16); // empty stored block
            }
            return w.toByteArray();
        }
    }

    /** LSB-first bit writer as deflate packs its stream. */
    static final class Bits {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();
        private int acc;
        private int n;

        Bits bits(int value, int count) {
            for (int i = 0; i < count; i++) {
                bit((value >>> i) & 1);
            }
            return this;
        }

        /** A Huffman code: most significant bit first. */
        Bits code(int code, int len) {
            for (int i = len - 1; i >= 0; i--) {
                bit((code >>> i) & 1);
            }
            return this;
        }

        Bits zeros(long count) {
            while (count > 0 && n != 0) {
                bit(0);
                count--;
            }
            for (long bytes = count / 8; bytes > 0; bytes--) {
                out.write(0);
            }
            for (long i = count % 8; i > 0; i--) {
                bit(0);
            }
            return this;
        }

        Bits align() {
            while (n != 0) {
                bit(0);
            }
            return this;
        }

        private void bit(int b) {
            acc |= b << n;
            if (++n == 8) {
                out.write(acc);
                acc = 0;
                n = 0;
            }
        }

        byte[] toByteArray() {
            if (n != 0) {
                out.write(acc);
                acc = 0;
                n = 0;
            }
            return out.toByteArray();
        }
    }

    /** Hand-made zstd frames: no checksum, no content size, window 2^windowLog. */
    static final class ZstdFrames {
        private ZstdFrames() {}

        static ByteArrayOutputStream header(int windowLog) {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            b.writeBytes(new byte[] {0x28, (byte) 0xb5, 0x2f, (byte) 0xfd});
            b.write(0x00);                       // frame header descriptor: nothing optional
            b.write((windowLog - 10) << 3);      // window descriptor: exponent, mantissa 0
            return b;
        }

        static void blockHeader(ByteArrayOutputStream b, boolean last, int type, int size) {
            int h = (size << 3) | (type << 1) | (last ? 1 : 0);
            b.write(h);
            b.write(h >>> 8);
            b.write(h >>> 16);
        }

        /** {@code blocks} RLE blocks of {@code size} zero bytes each (4 bytes per block). */
        static byte[] rle(int windowLog, int blocks, int size) {
            ByteArrayOutputStream b = header(windowLog);
            for (int i = 0; i < blocks; i++) {
                blockHeader(b, false, 1, size);
                b.write(0);
            }
            return b.toByteArray();
        }

        /** One block of the given type and size followed by {@code content}. */
        static byte[] block(int windowLog, int type, int size, byte[] content) {
            ByteArrayOutputStream b = header(windowLog);
            blockHeader(b, false, type, size);
            b.writeBytes(content);
            return b.toByteArray();
        }
    }
}
