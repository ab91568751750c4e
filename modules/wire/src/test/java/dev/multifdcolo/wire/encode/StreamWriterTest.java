package dev.multifdcolo.wire.encode;

import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.Wire;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Encoders against byte sequences quoted from the captures in PROTOCOL.md / QEMU-11.1-NOTES.md. */
class StreamWriterTest {
    private static final HexFormat HEX = HexFormat.ofDelimiter(" ");

    private static byte[] hex(String s) {
        return HexFormat.of().parseHex(s.replace(" ", ""));
    }

    private static String hex(byte[] b) {
        return HEX.formatHex(b);
    }

    @Test
    void headerConfigurationAndRamSetup() throws Exception {
        StreamWriter w = StreamWriter.buffered(16);
        w.header().configuration("none")
                .sectionStart(2, "ram", 0, 4)
                .ramMemSize(new String[]{"ram"}, new long[]{16L << 20})
                .ramEos().footer(2);
        // PROTOCOL.md §7.9, offsets 0..66 of mf_none_0.bin
        assertEquals("51 45 56 4d 00 00 00 03 07 00 00 00 04 6e 6f 6e 65"
                        + " 01 00 00 00 02 03 72 61 6d 00 00 00 00 00 00 00 04"
                        + " 00 00 00 00 01 00 00 04 03 72 61 6d 00 00 00 00 01 00 00 00"
                        + " 00 00 00 00 00 00 00 10 7e 00 00 00 02",
                hex(w.toByteArray()));
        assertEquals(67, w.totalBytes());
    }

    @Test
    void zeroAndPageRecordsUseContinueForTheCurrentBlock() throws Exception {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment img = arena.allocate(3 * Wire.PAGE_SIZE);
            for (int i = 0; i < Wire.PAGE_SIZE; i++) {
                img.set(java.lang.foreign.ValueLayout.JAVA_BYTE, Wire.PAGE_SIZE + i, (byte) i);
            }
            StreamWriter w = StreamWriter.buffered(8);
            w.ramZero("ram", 0).ramPage("ram", 0x1000, img, Wire.PAGE_SIZE).ramZero("ram", 0x3000)
                    .ramZero("vga", 0x2000).ramZero("ram", 0x4000);
            byte[] b = w.toByteArray();
            // PROTOCOL.md §7.9: "00..02 03 72 61 6d 00" then "00..30 22 00"
            assertEquals("00 00 00 00 00 00 00 02 03 72 61 6d 00", hex(Arrays.copyOfRange(b, 0, 13)));
            assertEquals("00 00 00 00 00 00 10 28", hex(Arrays.copyOfRange(b, 13, 21)));
            byte[] page = Arrays.copyOfRange(b, 21, 21 + Wire.PAGE_SIZE);
            assertArrayEquals(img.asSlice(Wire.PAGE_SIZE, Wire.PAGE_SIZE).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), page);
            int p = 21 + Wire.PAGE_SIZE;
            assertEquals("00 00 00 00 00 00 30 22 00", hex(Arrays.copyOfRange(b, p, p + 9)));
            assertEquals("00 00 00 00 00 00 20 02 03 76 67 61 00", hex(Arrays.copyOfRange(b, p + 9, p + 22)));
            assertEquals("00 00 00 00 00 00 40 02 03 72 61 6d 00", hex(Arrays.copyOfRange(b, p + 22, p + 35)));
            assertEquals(p + 35, b.length);
            assertEquals("ram", w.currentBlock());
            w.resetCurrentBlock().clear().ramZero("ram", 0x5000);
            assertEquals("00 00 00 00 00 00 50 02 03 72 61 6d 00", hex(w.toByteArray()));
        }
    }

    @Test
    void commandsAndMarkers() throws Exception {
        StreamWriter w = StreamWriter.buffered(64);
        w.enableColo().openReturnPath().ping(1).switchoverStart().ramMultifdFlush().ramEos()
                .sectionPart(1).sectionEnd(1).eof();
        assertEquals("08 00 08 00 00" + " 08 00 01 00 00" + " 08 00 02 00 04 00 00 00 01" + " 08 00 0b 00 00"
                        + " 00 00 00 00 00 00 02 00" + " 00 00 00 00 00 00 00 10"
                        + " 02 00 00 00 01" + " 03 00 00 00 01" + " 00",
                hex(w.toByteArray()));
        assertThrows(IllegalArgumentException.class, () -> w.command(Command.PING, new byte[3]));
        assertThrows(IllegalArgumentException.class, () -> w.ramZero("ram", 0x1001));
    }

    @Test
    void vmdescriptionAndDeviceSectionsLikeQemu72() throws Exception {
        NoneMachine dev = new NoneMachine(NoneMachine.Flavor.QEMU_7_2, "running", 0x0a0ad642L, 0x04ca87ecL);
        StreamWriter w = StreamWriter.buffered(64);
        dev.writeDeviceSections(w);
        w.eof().vmdescription(dev.vmdescJson("none"));
        byte[] b = w.toByteArray();
        // plain.bin at 0xd05e: FULL timer id 0 ... FULL globalstate id 4, "running", EOF, 0x06 len 0x1e6
        assertEquals("04 00 00 00 00 05 74 69 6d 65 72 00 00 00 00 00 00 00 02"
                        + " 00 00 00 00 0a 0a d6 42 00 00 00 00 00 00 00 00 00 00 00 00 04 ca 87 ec 7e 00 00 00 00",
                hex(Arrays.copyOfRange(b, 0, 48)));
        assertEquals("04 00 00 00 04 0b 67 6c 6f 62 61 6c 73 74 61 74 65 00 00 00 00 00 00 00 01 00 00 00 08"
                        + " 72 75 6e 6e 69 6e 67 00", hex(Arrays.copyOfRange(b, 48, 48 + 37)));
        assertEquals(0x1e6, ByteBuffer.wrap(b).getInt(48 + 134 + 2));
        assertEquals(dev.vmdescJson("none"), new String(b, 48 + 134 + 6, 0x1e6, StandardCharsets.UTF_8));
        assertEquals(2, dev.ramSectionId());
    }

    @Test
    void globalstateLikeQemu111() throws Exception {
        StreamWriter w = StreamWriter.buffered(64);
        NoneMachine.of(NoneMachine.Flavor.QEMU_11_1).writeDeviceSections(w);
        byte[] b = w.toByteArray();
        // mf4_0.bin at 180: FULL id 3 "globalstate" v1, size 10, "prelaunch", byte 32 of the area = 01
        int gs = 48;
        assertEquals("04 00 00 00 03 0b 67 6c 6f 62 61 6c 73 74 61 74 65 00 00 00 00 00 00 00 01 00 00 00 0a"
                + " 70 72 65 6c 61 75 6e 63 68 00", hex(Arrays.copyOfRange(b, gs, gs + 39)));
        assertEquals(1, b[gs + 29 + 32]);
        assertEquals(0, b[gs + 29 + 33]);
        assertEquals(gs + 134, b.length);
        assertThrows(IllegalArgumentException.class,
                () -> new NoneMachine(NoneMachine.Flavor.QEMU_11_1, "x".repeat(32), 0, 0));
    }

    @Test
    void channelModeDrainsAndCountsBytes() throws Exception {
        ByteArrayOutputStream sink = new ByteArrayOutputStream();
        StreamWriter w = StreamWriter.toChannel(Channels.newChannel(sink), 1024);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment img = arena.allocate(Wire.PAGE_SIZE * 10L);
            img.fill((byte) 0x5a);
            for (int i = 0; i < 10; i++) {
                w.ramPage("pc.ram", (long) i * Wire.PAGE_SIZE, img, (long) i * Wire.PAGE_SIZE);
            }
            w.bytes(new byte[10_000]).ramEos().flush();
        }
        long expected = (8 + 7 + 4096) + 9L * (8 + 4096) + 10_000 + 8;
        assertEquals(expected, sink.size());
        assertEquals(expected, w.totalBytes());
        assertEquals(0, w.pending());
    }

    @Test
    void packetWriterClearsFieldsOfThePreviousPacket() {
        PacketWriter w = new PacketWriter();
        long[] offs = new long[Wire.PAGES_PER_PACKET];
        for (int i = 0; i < offs.length; i++) {
            offs[i] = (long) i * Wire.PAGE_SIZE;
        }
        w.data(0x04, 100, 28, 12345, 7, PacketWriter.blockName("x".repeat(255)), offs, 0);
        byte[] sync = toArray(w.sync(8, 0));
        byte[] fresh = toArray(new PacketWriter().sync(8, 0));
        assertArrayEquals(fresh, sync);
        ByteBuffer expected = ByteBuffer.allocate(Wire.PACKET_HEADER_LEN);
        MultifdPacket.encode(expected, 0x01, 0, 0, 0, 0, 8, "", new long[0]);
        assertArrayEquals(expected.array(), sync);
        byte[] data = toArray(w.data(0, 2, 1, 8192, 9, PacketWriter.blockName("ram"), offs, 5));
        ByteBuffer e2 = ByteBuffer.allocate(Wire.PACKET_HEADER_LEN);
        MultifdPacket.encode(e2, 0, 128, 2, 1, 8192, 9, "ram", Arrays.copyOfRange(offs, 5, 8));
        assertArrayEquals(e2.array(), data);
        assertEquals(64, PacketWriter.hello(new byte[16], 3).remaining());
        assertEquals(3, PacketWriter.hello(new byte[16], 3).get(24));
    }

    private static byte[] toArray(ByteBuffer b) {
        byte[] a = new byte[b.remaining()];
        b.duplicate().get(a);
        return a;
    }

    @Test
    void rejectsBadInput() {
        StreamWriter w = StreamWriter.buffered(16);
        assertThrows(IllegalArgumentException.class, () -> w.countedString("y".repeat(256)));
        assertThrows(IllegalArgumentException.class, () -> w.ramMemSize(new String[]{"ram"}, new long[]{4095}));
        assertThrows(IllegalArgumentException.class, () -> PacketWriter.blockName("z".repeat(256)));
        assertThrows(IllegalArgumentException.class,
                () -> new PacketWriter().data(0, 100, 29, 0, 0, new byte[0], new long[129], 0));
        assertArrayEquals(hex("7e 00 00 00 09"), hexOf(() -> StreamWriter.buffered(1).footer(9)));
    }

    private interface Io {
        StreamWriter run() throws Exception;
    }

    private static byte[] hexOf(Io io) {
        try {
            return io.run().toByteArray();
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }
}
