package dev.multifdcolo.primary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.encode.NoneMachine;
import dev.multifdcolo.wire.encode.PacketWriter;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Our sender, recorded by {@link FakeDestination}, against real QEMU captures (see
 * {@code src/test/resources/captures/README.md}): the 5-page blob at 0x1000 of a 16 MiB "ram"
 * block, sent in the same configuration as the captured QEMU, gives the same main-channel bytes;
 * multifd headers are rebuilt byte for byte from the captured fields.
 */
class CaptureComparisonTest {
    private static final long MIB16 = 16L << 20;

    static byte[] resource(String name) throws IOException {
        try (InputStream in = CaptureComparisonTest.class.getResourceAsStream("/captures/" + name)) {
            if (in == null) {
                throw new IOException("missing test resource captures/" + name);
            }
            return in.readAllBytes();
        }
    }

    /** The capture setup: 16 MiB block "ram", blob loaded at 0x1000. */
    static GuestMemory blobMemory() throws Exception {
        GuestMemory mem = GuestMemory.allocate(List.of(new BlockSpec("ram", MIB16)), MIB16, Backing.anonymous());
        byte[] blob = resource("guest-ram-blob-at-0x1000.bin");
        MemorySegment.copy(MemorySegment.ofArray(blob), 0, mem.blocks().get(0).guest(), 0x1000, blob.length);
        return mem;
    }

    /** The capture's own device values (7.2 captures were taken from a running VM). */
    static NoneMachine devicesOf(byte[] capture, Framing framing, NoneMachine.Flavor flavor) throws IOException {
        StreamDecoder.MainStream m = StreamDecoder.decodeMain(capture, framing);
        ByteBuffer t = ByteBuffer.wrap(m.timer);
        return new NoneMachine(flavor, m.runState(), t.getLong(0), t.getLong(16));
    }

    static FakeDestination.Result send(SenderConfig.Builder b, FakeDestination dest, GuestMemory mem) throws Exception {
        try (MigrationSender s = MigrationSender.connect(b.build(), mem)) {
            s.migrate();
        }
        return dest.await(Duration.ofSeconds(20));
    }

    static Map<String, byte[]> rebuild(FakeDestination.Result r, Framing framing) throws IOException {
        List<StreamDecoder.ChannelStream> chans = new ArrayList<>();
        for (byte[] c : r.multifd()) {
            chans.add(StreamDecoder.decodeChannel(c, framing, null));
        }
        return StreamDecoder.rebuild(r.decoded(), chans);
    }

    static byte[] image(GuestMemory mem) {
        return mem.blocks().get(0).guest().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    @Test
    void legacyPlainReproducesQemu72PlainCapture() throws Exception {
        byte[] capture = resource("qemu72-plain.bin");
        NoneMachine dev = devicesOf(capture, Framing.LEGACY, NoneMachine.Flavor.QEMU_7_2);
        assertEquals("running", dev.runState());
        try (GuestMemory mem = blobMemory(); FakeDestination dest = new FakeDestination(Framing.LEGACY, 0, -1)) {
            FakeDestination.Result r = send(SenderConfig.builder("127.0.0.1", dest.port())
                    .framing(Framing.LEGACY).devices(dev), dest, mem);
            assertSameBytes(capture, r.main());
            assertArrayEquals(image(mem), rebuild(r, Framing.LEGACY).get("ram"));
        }
    }

    @Test
    void modernPlainReproducesQemu111PlainCapture() throws Exception {
        byte[] capture = resource("qemu11-plain_0.bin");
        try (GuestMemory mem = blobMemory(); FakeDestination dest = new FakeDestination(Framing.MODERN, 0, -1)) {
            FakeDestination.Result r = send(SenderConfig.builder("127.0.0.1", dest.port())
                    .framing(Framing.MODERN), dest, mem);
            assertSameBytes(capture, r.main());
            assertEquals(List.of(11), r.decoded().commands, "SWITCHOVER_START only");
        }
    }

    @Test
    void legacyMultifd2ReproducesQemu72MainChannelAndDataPacket() throws Exception {
        byte[] capture = resource("qemu72-mf_none_0.bin");
        NoneMachine dev = devicesOf(capture, Framing.LEGACY, NoneMachine.Flavor.QEMU_7_2);
        try (GuestMemory mem = blobMemory(); FakeDestination dest = new FakeDestination(Framing.LEGACY, 2, -1)) {
            FakeDestination.Result r = send(SenderConfig.builder("127.0.0.1", dest.port())
                    .framing(Framing.LEGACY).multifd(2).devices(dev), dest, mem);
            assertSameBytes(capture, r.main());
            // The data packet goes to whichever channel is free first (QEMU's sender does the same):
            // compare it on the channel that carries it, not on a fixed one.
            StreamDecoder.ChannelStream ours = null;
            for (byte[] c : r.multifd()) {
                StreamDecoder.ChannelStream cs = StreamDecoder.decodeChannel(c, Framing.LEGACY, null);
                if (cs.packets.size() == 4) {
                    ours = cs;
                }
            }
            StreamDecoder.ChannelStream theirs = StreamDecoder.decodeChannel(resource("qemu72-mf_none_1.bin"),
                    Framing.LEGACY, null);
            // that channel: SYNC, the 4-page data packet (num 2 in both), SYNC, SYNC
            org.junit.jupiter.api.Assertions.assertNotNull(ours, "one channel carries SYNC, data, SYNC, SYNC");
            assertArrayEquals(theirs.packets.get(1).header(), ours.packets.get(1).header(), "data packet header");
            assertArrayEquals(theirs.packets.get(1).payload(), ours.packets.get(1).payload(), "data payload");
            assertEquals(128, ours.packets.get(0).pagesAlloc(), "7.2 SYNC packets carry pages_alloc 128");
            assertArrayEquals(image(mem), rebuild(r, Framing.LEGACY).get("ram"));
            assertEquals(3, r.decoded().barriers);
        }
    }

    @Test
    void legacyMultifd4With111DevicesReproducesCompat72Capture() throws Exception {
        byte[] capture = resource("qemu11-mf4_compat72_0.bin");
        try (GuestMemory mem = blobMemory(); FakeDestination dest = new FakeDestination(Framing.LEGACY, 4, -1)) {
            FakeDestination.Result r = send(SenderConfig.builder("127.0.0.1", dest.port())
                    .framing(Framing.LEGACY).multifd(4).devices(NoneMachine.of(NoneMachine.Flavor.QEMU_11_1)),
                    dest, mem);
            assertSameBytes(capture, r.main());
            assertArrayEquals(image(mem), rebuild(r, Framing.LEGACY).get("ram"));
        }
    }

    @Test
    void modernMultifd4ReproducesQemu111MainChannel() throws Exception {
        byte[] capture = resource("qemu11-mf4_0.bin");
        try (GuestMemory mem = blobMemory(); FakeDestination dest = new FakeDestination(Framing.MODERN, 4, -1)) {
            FakeDestination.Result r = send(SenderConfig.builder("127.0.0.1", dest.port())
                    .framing(Framing.MODERN).multifd(4), dest, mem);
            assertSameBytes(capture, r.main());
            assertEquals(3, r.decoded().flushRecords);
            long zeroPages = 0;
            long normalPages = 0;
            for (byte[] c : r.multifd()) {
                StreamDecoder.ChannelStream cs = StreamDecoder.decodeChannel(c, Framing.MODERN, null);
                assertTrue(cs.packets.get(0).sync(), "first packet of every channel is the setup SYNC");
                for (StreamDecoder.Packet p : cs.packets) {
                    if (p.sync()) {
                        // 11.1: SYNC packets have pages_alloc 0, no block, nothing else
                        assertEquals(0, p.pagesAlloc());
                        assertEquals("", p.block());
                        assertEquals(0, p.normal() + p.zero() + p.nextSize());
                    } else {
                        assertEquals(128, p.pagesAlloc());
                        assertEquals("ram", p.block());
                        assertEquals(p.normal() * Wire.PAGE_SIZE, p.nextSize());
                        assertEquals(128, p.normal() + p.zero(), "16 MiB = 32 full packets");
                    }
                    zeroPages += p.zero();
                    normalPages += p.normal();
                }
            }
            assertEquals(4, normalPages);
            assertEquals(4092, zeroPages);
            assertArrayEquals(image(mem), rebuild(r, Framing.MODERN).get("ram"));
        }
    }

    /** Every packet header of the 11.1 mf4 capture, rebuilt by {@link PacketWriter} from its fields. */
    @Test
    void packetWriterReproducesEveryQemu111Header() throws Exception {
        int checked = 0;
        for (int f = 1; f <= 4; f++) {
            byte[] bytes = resource("qemu11-mf4_" + f + ".bin");
            StreamDecoder.ChannelStream cs = StreamDecoder.decodeChannel(bytes, Framing.MODERN, null);
            assertArrayEquals(java.util.Arrays.copyOf(bytes, 64), toArray(PacketWriter.hello(new byte[16], cs.id)));
            PacketWriter w = new PacketWriter();
            for (StreamDecoder.Packet p : cs.packets) {
                ByteBuffer h;
                if (p.sync()) {
                    h = w.sync(p.num(), p.pagesAlloc());
                } else {
                    long[] offs = new long[p.normal() + p.zero()];
                    System.arraycopy(p.normalOffsets(), 0, offs, 0, p.normal());
                    System.arraycopy(p.zeroOffsets(), 0, offs, p.normal(), p.zero());
                    h = w.data(p.flags(), p.normal(), p.zero(), p.nextSize(), p.num(),
                            PacketWriter.blockName(p.block()), offs, 0);
                }
                assertArrayEquals(p.header(), toArray(h), "channel " + cs.id + " packet " + p.num());
                checked++;
            }
        }
        assertEquals(44, checked);
    }

    @Test
    void packetWriterReproducesQemu72FirstPackets() throws Exception {
        byte[] bytes = resource("qemu72-mf_none_1.bin");
        StreamDecoder.ChannelStream cs = StreamDecoder.decodeChannel(bytes, Framing.LEGACY, null);
        PacketWriter w = new PacketWriter();
        assertArrayEquals(cs.packets.get(0).header(), toArray(w.sync(0, 128)));
        StreamDecoder.Packet d = cs.packets.get(1);
        assertArrayEquals(d.header(), toArray(w.data(0, 4, 0, 16384, 2, PacketWriter.blockName("ram"),
                d.normalOffsets(), 0)));
    }

    private static byte[] toArray(ByteBuffer b) {
        byte[] a = new byte[b.remaining()];
        b.duplicate().get(a);
        return a;
    }

    /** assertArrayEquals with the first difference in hex context, not 50 KB of numbers. */
    static void assertSameBytes(byte[] expected, byte[] actual) {
        int n = Math.min(expected.length, actual.length);
        for (int i = 0; i < n; i++) {
            if (expected[i] != actual[i]) {
                int from = Math.max(0, i - 16);
                throw new AssertionError("first difference at byte " + i + ": expected "
                        + HexFormat.ofDelimiter(" ").formatHex(expected, from, Math.min(expected.length, i + 16))
                        + " but was " + HexFormat.ofDelimiter(" ").formatHex(actual, from, Math.min(actual.length, i + 16)));
            }
        }
        assertEquals(expected.length, actual.length, "stream length");
    }
}
