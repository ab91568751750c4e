package dev.multifdcolo.wire.compress;

import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.Wire;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.function.Function;
import java.util.zip.Inflater;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Decodes the multifd channels captured from real QEMU sources (src/test/resources/captures,
 * copied from spec/captures-qemu-7.2 and captures-qemu-11.1) into a 16 MiB guest image.
 *
 * <p>All sets migrate the same guest: "blob300" loaded at 0x1000 (300 pages; page i = 2048 x a
 * byte in 0..3, then 2048 random bytes, Python {@code random.Random(1)}). Its SHA-256 below was
 * computed from that recipe, so the decoded image is checked byte for byte against the guest.
 */
class CaptureDecodeTest {
    static final int IMAGE_SIZE = 16 << 20;
    static final int BLOB_PAGES = 300;
    static final int BLOB_AT = 0x1000;
    static final String BLOB300_SHA256 = "84e78e73fb4b7173ff785e10e40500cd4f8f3678cdea4b74f4207bad6817ecfe";

    static final String[] ZLIB_72 = {"mf_zlib_1.bin", "mf_zlib_2.bin"};
    static final String[] ZSTD_72 = {"mf_zstd_1.bin", "mf_zstd_2.bin"};
    static final String[] ZSTD_111 = {"mf4_zstd_1.bin", "mf4_zstd_2.bin", "mf4_zstd_3.bin", "mf4_zstd_4.bin"};

    /** How the payload and the page buffer are presented to the decoder. */
    enum Buffers {
        HEAP(b -> b), DIRECT(Buffers::toDirect), READ_ONLY_HEAP_INPUT(ByteBuffer::asReadOnlyBuffer);

        final Function<ByteBuffer, ByteBuffer> input;

        Buffers(Function<ByteBuffer, ByteBuffer> input) {
            this.input = input;
        }

        ByteBuffer output(int size) {
            return this == DIRECT ? ByteBuffer.allocateDirect(size) : ByteBuffer.allocate(size);
        }

        private static ByteBuffer toDirect(ByteBuffer b) {
            ByteBuffer d = ByteBuffer.allocateDirect(b.remaining());
            d.put(b.duplicate()).flip();
            return d;
        }
    }

    /** What walking one set of channels saw. */
    record Decoded(byte[] image, int dataPackets, int zeroOnlyPackets, int zeroOnlyWithBits,
                   long leftoverInputPackets) {}

    static Decoded zlib72;
    static Decoded zstd72;
    static Decoded zstd111;

    @BeforeAll
    static void decodeAll() {
        zlib72 = decode(Compression.ZLIB, Buffers.HEAP, ZLIB_72);
        zstd72 = decode(Compression.ZSTD, Buffers.HEAP, ZSTD_72);
        zstd111 = decode(Compression.ZSTD, Buffers.HEAP, ZSTD_111);
    }

    @Test
    void qemu72ZlibAndZstdDecodeToTheSameImage() {
        assertArrayEquals(zlib72.image(), zstd72.image());
        assertGuestImage(zlib72.image());
        // 300 pages on 2 channels in 128-page packets: 128 + 44 on one, 128 on the other
        assertEquals(3, zlib72.dataPackets());
        assertEquals(3, zstd72.dataPackets());
    }

    @Test
    void qemu111ZstdDecodesToTheSameImage() {
        assertArrayEquals(zlib72.image(), zstd111.image());
        assertGuestImage(zstd111.image());
        // zero-only packets carry the zstd bit and no payload: they never reach the decoder
        assertTrue(zstd111.zeroOnlyPackets() > 0);
        assertEquals(zstd111.zeroOnlyPackets(), zstd111.zeroOnlyWithBits());
    }

    /**
     * The spec's claim (§6.1), checked with the JDK's bundled zlib and with zstd-jni: when the
     * output buffer is exactly full, the decoder has already consumed the whole payload,
     * including zlib's {@code 00 00 ff ff} sync-flush tail.
     */
    @Test
    void flushTailConsumedWithExactlyFullOutput() {
        assertEquals(0, zlib72.leftoverInputPackets());
        assertEquals(0, zstd72.leftoverInputPackets());
        assertEquals(0, zstd111.leftoverInputPackets());
    }

    @ParameterizedTest
    @EnumSource(Buffers.class)
    void bufferKindsDecodeTheSameImage(Buffers kind) {
        assertArrayEquals(zlib72.image(), decode(Compression.ZLIB, kind, ZLIB_72).image());
        assertArrayEquals(zlib72.image(), decode(Compression.ZSTD, kind, ZSTD_72).image());
        assertArrayEquals(zlib72.image(), decode(Compression.ZSTD, kind, ZSTD_111).image());
    }

    /** The captured packets themselves have the shape §6.1 describes. */
    @Test
    void qemuZlibPacketsLookAsSpecified() {
        byte[] ch = resource(ZLIB_72[0]);
        ByteBuffer buf = ByteBuffer.wrap(ch);
        MultifdPacket p = new MultifdPacket().wrap(buf.duplicate().position(Wire.HELLO_LEN));
        // the channel starts with an empty SYNC packet, then the first data packet
        int first = Wire.HELLO_LEN + Wire.PACKET_HEADER_LEN;
        assertEquals(0, p.normalPages());
        p.wrap(buf.duplicate().position(first));
        int size = p.nextPacketSize();
        int at = first + Wire.PACKET_HEADER_LEN;
        assertEquals(0x78, ch[at] & 0xff);
        assertEquals(0x01, ch[at + 1] & 0xff);
        assertArrayEquals(new byte[] {0, 0, (byte) 0xff, (byte) 0xff}, Arrays.copyOfRange(ch, at + size - 4, at + size));
    }

    /** Cross-check: the JDK's inflater fed the whole channel at once yields the same pages. */
    @Test
    void jdkInflaterOverConcatenatedPayloadsAgrees() throws Exception {
        byte[] ch = resource(ZLIB_72[0]);
        ByteBuffer buf = ByteBuffer.wrap(ch);
        MultifdPacket p = new MultifdPacket();
        ByteBuffer payloads = ByteBuffer.allocate(ch.length);
        int pages = 0;
        for (int pos = Wire.HELLO_LEN; pos < ch.length; ) {
            p.wrap(buf.duplicate().position(pos));
            pos += Wire.PACKET_HEADER_LEN;
            if (p.normalPages() > 0) {
                payloads.put(ch, pos, p.nextPacketSize());
                pos += p.nextPacketSize();
                pages += p.normalPages();
            }
        }
        Inflater inf = new Inflater();
        inf.setInput(payloads.flip());
        byte[] all = new byte[pages * Wire.PAGE_SIZE];
        int n = 0;
        while (n < all.length) {
            int k = inf.inflate(all, n, all.length - n);
            assertTrue(k > 0);
            n += k;
        }
        assertEquals(0, inf.getRemaining());
        assertFalse(inf.finished());
        inf.end();

        byte[] ours = new byte[all.length];
        int at = 0;
        try (PageDecompressor d = PageDecompressor.create(Compression.ZLIB)) {
            for (int pos = Wire.HELLO_LEN; pos < ch.length; ) {
                p.wrap(buf.duplicate().position(pos));
                pos += Wire.PACKET_HEADER_LEN;
                if (p.normalPages() > 0) {
                    int len = p.normalPages() * Wire.PAGE_SIZE;
                    d.decompress(ByteBuffer.wrap(ch, pos, p.nextPacketSize()), ByteBuffer.wrap(ours, at, len));
                    at += len;
                    pos += p.nextPacketSize();
                }
            }
        }
        assertArrayEquals(all, ours);
    }

    // ------------------------------------------------------------------ helpers

    static void assertGuestImage(byte[] image) {
        int nonZero = 0;
        for (int off = 0; off < image.length; off += Wire.PAGE_SIZE) {
            boolean inBlob = off >= BLOB_AT && off < BLOB_AT + BLOB_PAGES * Wire.PAGE_SIZE;
            boolean zero = isZero(image, off, Wire.PAGE_SIZE);
            if (inBlob) {
                assertFalse(zero, () -> "blob page at 0x" + Integer.toHexString(BLOB_AT) + " is zero");
                // page i starts with 2048 copies of a byte in 0..3
                byte fill = image[off];
                assertTrue(fill >= 0 && fill <= 3);
                for (int i = 1; i < 2048; i++) {
                    assertEquals(fill, image[off + i]);
                }
                nonZero++;
            } else {
                assertTrue(zero, () -> "page outside the blob is not zero");
            }
        }
        assertEquals(BLOB_PAGES, nonZero);
        assertEquals(BLOB300_SHA256, sha256(image, BLOB_AT, BLOB_PAGES * Wire.PAGE_SIZE));
    }

    static Decoded decode(Compression c, Buffers kind, String... channels) {
        byte[] image = new byte[IMAGE_SIZE];
        int[] counts = new int[3];
        long leftover = 0;
        for (String name : channels) {
            try (PageDecompressor d = PageDecompressor.create(c)) {
                walk(resource(name), c, d, kind, image, counts);
                leftover += switch (d) {
                    case ZlibPageDecompressor z -> z.leftoverInputPackets;
                    case ZstdPageDecompressor z -> z.leftoverInputPackets;
                };
            }
        }
        return new Decoded(image, counts[0], counts[1], counts[2], leftover);
    }

    /** One channel: 64-byte hello, then 1344-byte headers each followed by its payload (§3.3). */
    static void walk(byte[] ch, Compression c, PageDecompressor d, Buffers kind, byte[] image, int[] counts) {
        ByteBuffer buf = ByteBuffer.wrap(ch);
        assertEquals(Wire.MULTIFD_MAGIC, buf.getInt(0));
        MultifdPacket p = new MultifdPacket();
        ByteBuffer pages = kind.output(Wire.PAGES_PER_PACKET * Wire.PAGE_SIZE);
        int pos = Wire.HELLO_LEN;
        while (pos < ch.length) {
            assertTrue(pos + Wire.PACKET_HEADER_LEN <= ch.length, "truncated header");
            p.wrap(buf.duplicate().position(pos));
            assertEquals(Wire.MULTIFD_MAGIC, p.magic());
            pos += Wire.PACKET_HEADER_LEN;
            int normal = p.normalPages();
            int zero = p.zeroPages();
            if (normal > 0) {
                assertEquals(c.flagBits, p.compressionBits());
                assertEquals(Wire.RAM_IDSTR, p.ramblock());
                int size = PageDecompressor.checkedPayloadSize(p.nextPacketSize(), normal);
                ByteBuffer in = kind.input.apply(ByteBuffer.wrap(ch, pos, size).slice());
                pages.clear().limit(normal * Wire.PAGE_SIZE);
                d.decompress(in, pages);
                assertFalse(in.hasRemaining());
                assertFalse(pages.hasRemaining());
                for (int i = 0; i < normal; i++) {
                    pages.get(i * Wire.PAGE_SIZE, image, Math.toIntExact(p.offset(i)), Wire.PAGE_SIZE);
                }
                pos += size;
                counts[0]++;
            } else if (zero > 0) {
                counts[1]++;
                if (p.compressionBits() == c.flagBits) {
                    counts[2]++;
                }
            }
            for (int i = normal; i < normal + zero; i++) {
                Arrays.fill(image, Math.toIntExact(p.offset(i)), Math.toIntExact(p.offset(i)) + Wire.PAGE_SIZE, (byte) 0);
            }
        }
        assertEquals(ch.length, pos);
    }

    static boolean isZero(byte[] b, int off, int len) {
        for (int i = off; i < off + len; i++) {
            if (b[i] != 0) {
                return false;
            }
        }
        return true;
    }

    static String sha256(byte[] b, int off, int len) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(b, off, len);
            return HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new AssertionError(e);
        }
    }

    static byte[] resource(String name) {
        try (InputStream in = CaptureDecodeTest.class.getResourceAsStream("/captures/" + name)) {
            if (in == null) {
                throw new IllegalStateException("missing test resource captures/" + name);
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
