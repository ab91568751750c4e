package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.RejectionRig.Rejects;
import dev.multifdcolo.secondary.RejectionRig.Setup;
import dev.multifdcolo.secondary.StreamBytes.Migration;
import dev.multifdcolo.secondary.StreamBytes.Packet;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Random;

import static dev.multifdcolo.secondary.RejectionRig.rejects;
import static dev.multifdcolo.secondary.RejectionRig.says;
import static dev.multifdcolo.secondary.StreamBytes.CHANNEL_DATA;
import static dev.multifdcolo.secondary.StreamBytes.RAM_LEN;
import static dev.multifdcolo.secondary.StreamBytes.cat;
import static dev.multifdcolo.secondary.StreamBytes.hello;

/**
 * Every multifd-channel rule (PROTOCOL.md §2.2 hello, §3.7 packet validation, §3.4 compression
 * bits, §5 device state, §6 compressed payloads, end of channel). Each test replaces one hello or
 * packet of channel 1 of the valid two-channel migration of {@link StreamBytes#multifd}; channel 0
 * and the main channel stay valid, so the rejection comes from exactly that defect, whatever the
 * read splits.
 */
class RejectionMultifdTest {
    static final Migration LEGACY = StreamBytes.multifd(2, FlushMode.LEGACY, Compression.NONE);
    static final long A = 0x20000;   // channel 1's data packet pages: A and A + 0x3000

    /** Channel 1's valid data packet (packet_num 5), uncompressed. */
    static Packet data() {
        return StreamBytes.data(5, A, A + 0x3000);
    }

    /** Channel 1's valid data packet, as the first packet of a {@code c} stream. */
    static Packet data(Compression c) {
        Packet p = data();
        p.flags = c.flagBits;
        p.payload = StreamBytes.compress(c, p.payload);
        p.nextPacketSize = p.payload.length;
        return p;
    }

    static ProtocolException rejectsPacket(Rule rule, Packet bad) {
        return rejects(rule, LEGACY.withChannelPart(1, CHANNEL_DATA, bad.bytes()));
    }

    static ProtocolException rejectsPacket(Rule rule, Compression c, Packet bad) {
        Migration m = StreamBytes.multifd(2, FlushMode.LEGACY, c).withChannelPart(1, CHANNEL_DATA, bad.bytes());
        return rejects(rule, m);
    }

    static ProtocolException rejectsHello(Rule rule, byte[] hello) {
        return rejects(rule, LEGACY.withChannelPart(1, 0, hello));
    }

    // ------------------------------------------------------------------ §2.2 hello

    @Test
    @Rejects(Rule.HELLO_MAGIC)
    void helloMagic() {
        says(rejectsHello(Rule.HELLO_MAGIC, hello(0x11223345, 1, new byte[16], 1)), "received magic 0x11223345, expected 0x11223344");
        says(rejectsHello(Rule.HELLO_MAGIC, hello(0x5145564d, 1, new byte[16], 1)), "received magic 0x5145564d");
    }

    @Test
    @Rejects(Rule.HELLO_VERSION)
    void helloVersion() {
        for (int v : new int[]{0, 2, -1}) {
            says(rejectsHello(Rule.HELLO_VERSION, hello(Wire.MULTIFD_MAGIC, v, new byte[16], 1)),
                    "received version " + v + ", expected 1");
        }
    }

    @Test
    @Rejects(Rule.HELLO_UUID)
    void helloUuid() {
        byte[] uuid = new byte[16];
        for (int i = 0; i < 16; i++) {
            uuid[i] = (byte) (i * 0x11);
        }
        says(rejectsHello(Rule.HELLO_UUID, hello(Wire.MULTIFD_MAGIC, 1, uuid, 1)),
                "received uuid 00112233445566778899aabbccddeeff, expected 00000000000000000000000000000000");
        // the replica expects a UUID; a source without -uuid sends zeros
        ProtocolException e = rejects(Rule.HELLO_UUID, LEGACY.main(), LEGACY.channels(), Setup.of(LEGACY).withUuid(uuid));
        says(e, "received uuid 00000000000000000000000000000000, expected 00112233445566778899aabbccddeeff");
    }

    @Test
    @Rejects(Rule.HELLO_CHANNEL_ID)
    void helloChannelIdOutOfRange() {
        // QEMU itself only rejects id > N; id == N is out of range too (§2.2 step 5)
        for (int id : new int[]{2, 3, 255}) {
            says(rejectsHello(Rule.HELLO_CHANNEL_ID, hello(id)),
                    "received channel id " + id + ", but only 2 multifd channels are configured");
        }
    }

    // ------------------------------------------------------------------ §3.7 packet

    @Test
    @Rejects(Rule.PACKET_MAGIC)
    void packetMagic() {
        Packet p = data();
        p.magic = 0x11223345;
        says(rejectsPacket(Rule.PACKET_MAGIC, p), "received packet magic 0x11223345, expected 0x11223344");
        // in the very first packet, a SYNC
        Packet sync = StreamBytes.sync(4);
        sync.magic = 0;
        says(rejects(Rule.PACKET_MAGIC, LEGACY.withChannelPart(1, 1, sync.bytes())), "received packet magic 0x00000000");
    }

    @Test
    @Rejects(Rule.PACKET_VERSION)
    void packetVersion() {
        for (int v : new int[]{0, 2}) {
            Packet p = data();
            p.version = v;
            says(rejectsPacket(Rule.PACKET_VERSION, p), "received packet version " + v + ", expected 1");
        }
    }

    @Test
    @Rejects(Rule.PACKET_DEVICE_STATE)
    void deviceStatePacket() {
        // §5 layout: magic, version, flags 0x40, idstr[256], instance_id, next_packet_size, blob
        byte[] blob = "vfio device state".getBytes(StandardCharsets.ISO_8859_1);
        ByteBuffer b = ByteBuffer.allocate(276 + blob.length);
        b.putInt(Wire.MULTIFD_MAGIC).putInt(1).putInt(0x40).put("0000:00:02.0/vfio".getBytes(StandardCharsets.ISO_8859_1));
        b.position(268);
        b.putInt(0).putInt(blob.length).put(blob);
        says(rejects(Rule.PACKET_DEVICE_STATE, LEGACY.withChannelPart(1, CHANNEL_DATA, b.array())),
                "device-state packet (flags 0x40)");
    }

    @Test
    @Rejects(Rule.PACKET_PAGES_ALLOC)
    void packetPagesAlloc() {
        for (int alloc : new int[]{129, 0x7fffffff, 0xffffffff}) {
            Packet p = data();
            p.pagesAlloc = alloc;
            says(rejectsPacket(Rule.PACKET_PAGES_ALLOC, p),
                    "received packet with " + Integer.toUnsignedString(alloc) + " pages, expected at most 128");
        }
        // page-less packets are counted too
        Packet sync = StreamBytes.sync(6);
        sync.pagesAlloc = 4096;
        says(rejects(Rule.PACKET_PAGES_ALLOC, LEGACY.withChannelPart(1, 3, sync.bytes())), "4096 pages");
    }

    @Test
    @Rejects(Rule.PACKET_NORMAL_PAGES)
    void packetNormalPages() {
        Packet p = data();
        p.pagesAlloc = 1;
        says(rejectsPacket(Rule.PACKET_NORMAL_PAGES, p), "received packet with 2 normal pages, pages_alloc is 1");
        for (int normal : new int[]{129, 0x80000000, 0xffffffff}) {
            Packet q = data();
            q.normal = normal;
            says(rejectsPacket(Rule.PACKET_NORMAL_PAGES, q),
                    "received packet with " + Integer.toUnsignedString(normal) + " normal pages, pages_alloc is 128");
        }
    }

    @Test
    @Rejects(Rule.PACKET_ZERO_PAGES)
    void packetZeroPages() {
        for (int zero : new int[]{127, 128, 0x7fffffff, 0xffffffff}) {
            Packet p = data();
            p.zero = zero;
            says(rejectsPacket(Rule.PACKET_ZERO_PAGES, p),
                    "received packet with " + Integer.toUnsignedString(zero) + " zero pages, at most 126 remain after 2 normal pages");
        }
    }

    @Test
    @Rejects(Rule.PACKET_RAMBLOCK)
    void packetUnknownRamBlock() {
        Packet p = data();
        p.ramblock = "pc.ram".getBytes(StandardCharsets.ISO_8859_1);
        says(rejectsPacket(Rule.PACKET_RAMBLOCK, p), "unknown RAMBlock 'pc.ram'");
        // 256 name bytes without a NUL: byte 255 is forced to NUL as QEMU does, the rest is unknown
        Packet q = data();
        q.ramblock = new byte[256];
        Arrays.fill(q.ramblock, (byte) 'r');
        says(rejectsPacket(Rule.PACKET_RAMBLOCK, q), "unknown RAMBlock '" + "r".repeat(255) + "'");
        // a packet with only zero pages is looked up too
        Packet z = StreamBytes.sync(5);
        z.flags = 0;
        z.zero = 1;
        z.offsets[0] = A;
        z.ramblock = "rom".getBytes(StandardCharsets.ISO_8859_1);
        says(rejectsPacket(Rule.PACKET_RAMBLOCK, z), "unknown RAMBlock 'rom'");
    }

    @Test
    @Rejects(Rule.PACKET_OFFSET_RANGE)
    void packetOffsetOutsideTheBlock() {
        for (long off : new long[]{RAM_LEN, RAM_LEN - 0x1000 + 0x1000L * 16, 1L << 40, 0xfffffffffffff000L, 0x8000000000000000L}) {
            Packet p = data();
            p.offsets[1] = off;
            says(rejectsPacket(Rule.PACKET_OFFSET_RANGE, p),
                    String.format("page offset 0x%x outside block ram of 0x100000 bytes", off));
        }
        // the zero-page entries behind the normal ones are checked as well
        Packet z = data();
        z.zero = 1;
        z.offsets[2] = RAM_LEN;
        says(rejectsPacket(Rule.PACKET_OFFSET_RANGE, z), "page offset 0x100000 outside block ram");
    }

    @Test
    @Rejects(Rule.PACKET_OFFSET_ALIGN)
    void packetOffsetNotPageAligned() {
        for (long off : new long[]{A + 1, A + 0x800, A + 0xfff}) {
            Packet p = data();
            p.offsets[0] = off;
            says(rejectsPacket(Rule.PACKET_OFFSET_ALIGN, p), String.format("page offset 0x%x in block ram is not page aligned", off));
        }
    }

    // ------------------------------------------------------------------ §3.4 compression bits

    @Test
    @Rejects(Rule.PACKET_COMPRESSION)
    void packetCompressionBits() {
        Packet zlibOnNone = data();
        zlibOnNone.flags = Compression.ZLIB.flagBits;
        says(rejectsPacket(Rule.PACKET_COMPRESSION, zlibOnNone), "packet compression bits 0x2, but this replica expects none (0x0)");
        Packet plainOnZlib = data(Compression.ZLIB);
        plainOnZlib.flags = 0;
        says(rejectsPacket(Rule.PACKET_COMPRESSION, Compression.ZLIB, plainOnZlib),
                "packet compression bits 0x0, but this replica expects zlib (0x2)");
        says(rejectsPacket(Rule.PACKET_COMPRESSION, Compression.ZLIB, data(Compression.ZSTD)),
                "packet compression bits 0x4, but this replica expects zlib (0x2)");
        Packet qpl = data(Compression.ZSTD);
        qpl.flags = 0x08;
        says(rejectsPacket(Rule.PACKET_COMPRESSION, Compression.ZSTD, qpl), "packet compression bits 0x8, but this replica expects zstd");
        // a zero-page-only packet carries the bits too (11.1) and they must match
        Packet zeroOnly = StreamBytes.sync(5);
        zeroOnly.flags = Compression.ZSTD.flagBits;
        zeroOnly.zero = 1;
        zeroOnly.offsets[0] = A;
        says(rejectsPacket(Rule.PACKET_COMPRESSION, zeroOnly), "packet compression bits 0x4, but this replica expects none");
    }

    // ------------------------------------------------------------------ §6 compressed payload

    @Test
    @Rejects(Rule.PACKET_PAYLOAD_SIZE)
    void compressedPayloadSizeOutOfBounds() {
        for (Compression c : new Compression[]{Compression.ZLIB, Compression.ZSTD}) {
            for (int size : new int[]{0, (1 << 20) + 1, 0x7fffffff, 0x80000000, 0xffffffff}) {
                Packet p = data(c);
                p.nextPacketSize = size;
                says(rejectsPacket(Rule.PACKET_PAYLOAD_SIZE, c, p),
                        "compressed payload of " + Integer.toUnsignedString(size) + " bytes for 2 pages (bound 1048576)");
            }
        }
    }

    @Test
    @Rejects(Rule.DECOMPRESS_SIZE)
    void compressedPayloadDecodesToTheWrongSize() {
        for (Compression c : new Compression[]{Compression.ZLIB, Compression.ZSTD}) {
            // one page of data for a packet that lists two
            Packet shortOne = data();
            shortOne.flags = c.flagBits;
            shortOne.payload = StreamBytes.compress(c, StreamBytes.pages(A));
            shortOne.nextPacketSize = shortOne.payload.length;
            says(rejectsPacket(Rule.DECOMPRESS_SIZE, c, shortOne),
                    c.qemuName() + " payload decodes to 4096 bytes, expected 8192");
            // three pages of data for two
            Packet longOne = data();
            longOne.flags = c.flagBits;
            longOne.payload = StreamBytes.compress(c, StreamBytes.pages(A, A + 0x3000, A + 0x5000));
            longOne.nextPacketSize = longOne.payload.length;
            says(rejectsPacket(Rule.DECOMPRESS_SIZE, c, longOne),
                    c.qemuName() + " payload decodes to more than the 8192 bytes of the packet's pages");
        }
    }

    @Test
    @Rejects(Rule.DECOMPRESS_CORRUPT)
    void compressedPayloadCorrupt() {
        byte[] junk = new byte[300];
        new Random(5).nextBytes(junk);
        for (Compression c : new Compression[]{Compression.ZLIB, Compression.ZSTD}) {
            Packet p = data(c);
            p.payload = junk;
            p.nextPacketSize = junk.length;
            says(rejectsPacket(Rule.DECOMPRESS_CORRUPT, c, p), "decompress-corrupt: " + c.qemuName() + ":");
        }
        // a valid zlib packet whose header check bits were flipped
        Packet z = data(Compression.ZLIB);
        z.payload[1] ^= 0x01;
        says(rejectsPacket(Rule.DECOMPRESS_CORRUPT, Compression.ZLIB, z), "zlib: incorrect header check");
    }

    // ------------------------------------------------------------------ end of a channel

    @Test
    @Rejects(Rule.CHANNEL_TRUNCATED)
    void multifdChannelClosedInsideARecord() {
        byte[] packet = data().bytes();
        says(rejects(Rule.CHANNEL_TRUNCATED, LEGACY.withChannelPart(1, CHANNEL_DATA, Arrays.copyOf(packet, 6)).withChannelCut(1, 3)),
                "multifd channel 1 closed inside a packet header");
        says(rejects(Rule.CHANNEL_TRUNCATED, LEGACY.withChannelPart(1, CHANNEL_DATA, Arrays.copyOf(packet, 700)).withChannelCut(1, 3)),
                "multifd channel 1 closed inside a packet header");
        says(rejects(Rule.CHANNEL_TRUNCATED, LEGACY.withChannelPart(1, CHANNEL_DATA,
                Arrays.copyOf(packet, Wire.PACKET_HEADER_LEN + 5000)).withChannelCut(1, 3)), "multifd channel 1 closed inside a packet payload");
        says(rejects(Rule.CHANNEL_TRUNCATED, LEGACY.withChannelPart(1, 0, Arrays.copyOf(hello(1), 30)).withChannelCut(1, 1)),
                "multifd channel -1 closed inside a hello");
        // compressed payload cut short
        Migration z = StreamBytes.multifd(2, FlushMode.LEGACY, Compression.ZLIB);
        byte[] zp = data(Compression.ZLIB).bytes();
        says(rejects(Rule.CHANNEL_TRUNCATED, z.withChannelPart(1, CHANNEL_DATA, Arrays.copyOf(zp, zp.length - 3)).withChannelCut(1, 3)),
                "multifd channel 1 closed inside a packet payload");
        // after the last SYNC, in the middle of a further packet
        says(rejects(Rule.CHANNEL_TRUNCATED, LEGACY.withChannelInsert(1, 5, cat(Arrays.copyOf(StreamBytes.sync(9).bytes(), 100)))),
                "multifd channel 1 closed inside a packet header");
    }
}
