package dev.multifdcolo.primary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.compress.PageDecompressor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The sender against {@link FakeDestination}: stream shapes, rounds, compression, return path, errors. */
class MigrationSenderTest {
    static final long SIZE = 8L << 20;

    static byte[] image(GuestMemory mem, String block) {
        return mem.block(block).guest().toArray(ValueLayout.JAVA_BYTE);
    }

    static Map<String, byte[]> rebuild(FakeDestination.Result r, Framing framing, Compression c) throws IOException {
        Map<Integer, PageDecompressor> dec = new HashMap<>();
        StreamDecoder.Decompress d = c == Compression.NONE ? null : (ch, payload, normal) -> {
            ByteBuffer out = ByteBuffer.allocate(normal * 4096);
            dec.computeIfAbsent(ch, k -> PageDecompressor.create(c)).decompress(ByteBuffer.wrap(payload), out);
            return out.array();
        };
        List<StreamDecoder.ChannelStream> chans = new ArrayList<>();
        for (byte[] b : r.multifd()) {
            chans.add(StreamDecoder.decodeChannel(b, framing, d));
        }
        dec.values().forEach(PageDecompressor::close);
        return StreamDecoder.rebuild(r.decoded(), chans);
    }

    @ParameterizedTest
    @EnumSource(Compression.class)
    void multifdRoundsWithDirtyPagesRebuildTheImage(Compression c) throws Exception {
        for (Framing framing : Framing.values()) {
            try (GuestMemory mem = twoBlocks(); FakeDestination dest = new FakeDestination(framing, 3, -1)) {
                List<SendStats> progress = new CopyOnWriteArrayList<>();
                SenderConfig cfg = SenderConfig.builder("127.0.0.1", dest.port()).framing(framing).multifd(3)
                        .compression(c).zstdLevel(3).zlibLevel(6).progress(progress::add)
                        .progressInterval(Duration.ZERO).build();
                try (MigrationSender s = MigrationSender.connect(cfg, mem)) {
                    s.setup();
                    s.iterate(DirtyPages.all(mem));
                    RamBlock ram = mem.block("ram");
                    DirtyPages d = QemuDestinationTest.rewrite(ram, 1);
                    s.iterate(d);
                    s.complete(QemuDestinationTest.rewrite(ram, 2));
                    SendStats st = s.finish();
                    assertEquals(4, st.syncs(), "setup + 3 sections");
                    assertEquals(3, st.iterations());
                    assertTrue(st.packets() > st.syncs() * 3, "data packets besides the SYNCs");
                }
                FakeDestination.Result r = dest.await(Duration.ofSeconds(20));
                Map<String, byte[]> img = rebuild(r, framing, c);
                assertArrayEquals(image(mem, "ram"), img.get("ram"), framing + " " + c);
                assertArrayEquals(image(mem, "vga.vram"), img.get("vga.vram"), framing + " " + c);
                assertEquals(4, r.decoded().barriers);
                assertEquals(framing == Framing.MODERN ? 4 : 0, r.decoded().flushRecords);
                assertEquals(framing == Framing.MODERN ? List.of(11) : List.of(), r.decoded().commands);
                assertFalse(progress.isEmpty());
                assertEquals("done", progress.getLast().phase());
                for (byte[] ch : r.multifd()) {
                    StreamDecoder.Decompress skip = c == Compression.NONE ? null : (id, payload, n) -> new byte[n * 4096];
                    for (StreamDecoder.Packet p : StreamDecoder.decodeChannel(ch, framing, skip).packets) {
                        int bits = p.flags() & MultifdPacket.COMPRESSION_MASK;
                        assertEquals(p.sync() ? 0 : c.flagBits, bits, "compression bits");
                        if (framing == Framing.LEGACY) {
                            assertEquals(0, p.zero(), "legacy sends zero pages on the main channel");
                            assertTrue(p.sync() || p.normal() > 0, "no empty data packets");
                        }
                    }
                }
            }
        }
    }

    /** Two blocks, the second announced after "ram", to exercise block switches and CONTINUE. */
    static GuestMemory twoBlocks() throws Exception {
        GuestMemory mem = GuestMemory.allocate(List.of(new BlockSpec("ram", SIZE), new BlockSpec("vga.vram", 1 << 20)),
                SIZE + (1 << 20), Backing.anonymous());
        GuestImages.fill(mem.block("ram"), 5, 0.5);
        GuestImages.fill(mem.block("vga.vram"), 6, 0.2);
        return mem;
    }

    @Test
    void plainRoundsUseContinueAndRebuild() throws Exception {
        try (GuestMemory mem = twoBlocks(); FakeDestination dest = new FakeDestination(Framing.LEGACY, 0, -1)) {
            try (MigrationSender s = MigrationSender.connect(
                    SenderConfig.builder("127.0.0.1", dest.port()).framing(Framing.LEGACY).build(), mem)) {
                s.setup();
                s.iterate(DirtyPages.all(mem));
                s.complete(QemuDestinationTest.rewrite(mem.block("ram"), 4));
                s.finish();
            }
            FakeDestination.Result r = dest.await(Duration.ofSeconds(20));
            Map<String, byte[]> img = rebuild(r, Framing.LEGACY, Compression.NONE);
            assertArrayEquals(image(mem, "ram"), img.get("ram"));
            assertArrayEquals(image(mem, "vga.vram"), img.get("vga.vram"));
            // ram named once, vga.vram named once, ram named again in the completion section
            int named = 0;
            ByteBuffer b = ByteBuffer.wrap(r.main());
            for (int i = 0; i + 12 < r.main().length; i++) {
                long w = b.getLong(i);
                if ((w & 0xfff) == 0x08 || (w & 0xfff) == 0x02) {
                    int len = r.main()[i + 8] & 0xff;
                    String n = new String(r.main(), i + 9, Math.min(len, r.main().length - i - 9),
                            java.nio.charset.StandardCharsets.ISO_8859_1);
                    if (n.equals("ram") || n.equals("vga.vram")) {
                        named++;
                    }
                }
            }
            assertTrue(named >= 3 && named < 10, "block names only on block switches, found " + named);
        }
    }

    @Test
    void returnPathShutZeroCompletesAndPongIsRecorded() throws Exception {
        try (GuestMemory mem = twoBlocks(); FakeDestination dest = new FakeDestination(Framing.MODERN, 2, 0)) {
            try (MigrationSender s = MigrationSender.connect(SenderConfig.builder("127.0.0.1", dest.port())
                    .multifd(2).returnPath(true).uuid("00112233-4455-6677-8899-aabbccddeeff").build(), mem)) {
                s.migrate();
                assertEquals(List.of(1), s.pongs());
            }
            FakeDestination.Result r = dest.await(Duration.ofSeconds(20));
            assertEquals(List.of(1, 2, 11), r.decoded().commands, "OPEN_RETURN_PATH, PING, SWITCHOVER_START");
            assertEquals("CMD 1", r.decoded().events.get(0));
            assertEquals("CMD 2", r.decoded().events.get(1));
            byte[] hello = java.util.Arrays.copyOfRange(r.multifd().get(0), 8, 24);
            assertArrayEquals(SenderConfig.uuidBytes("00112233-4455-6677-8899-aabbccddeeff"), hello);
            assertEquals((byte) 0x00, hello[0]);
            assertEquals((byte) 0xff, hello[15]);
        }
    }

    @Test
    void returnPathShutOneFailsTheSession() throws Exception {
        try (GuestMemory mem = twoBlocks(); FakeDestination dest = new FakeDestination(Framing.MODERN, 0, 1)) {
            try (MigrationSender s = MigrationSender.connect(
                    SenderConfig.builder("127.0.0.1", dest.port()).returnPath(true).build(), mem)) {
                MigrationException e = assertThrows(MigrationException.class, s::migrate);
                assertTrue(e.getMessage().contains("SHUT 1"), e.getMessage());
            }
        }
    }

    @Test
    void returnPathClosedWithoutShutFails() throws Exception {
        try (GuestMemory mem = twoBlocks(); FakeDestination dest = new FakeDestination(Framing.MODERN, 0, -1)) {
            try (MigrationSender s = MigrationSender.connect(SenderConfig.builder("127.0.0.1", dest.port())
                    .returnPath(true).shutTimeout(Duration.ofSeconds(2)).build(), mem)) {
                MigrationException e = assertThrows(MigrationException.class, s::migrate);
                assertTrue(e.getMessage().contains("SHUT"), e.getMessage());
            }
        }
    }

    @Test
    void connectionRefusedIsOneLine() throws Exception {
        int port;
        try (ServerSocket ss = new ServerSocket(0)) {
            port = ss.getLocalPort();
        }
        try (GuestMemory mem = twoBlocks()) {
            MigrationException e = assertThrows(MigrationException.class,
                    () -> MigrationSender.connect(SenderConfig.builder("127.0.0.1", port).build(), mem));
            assertTrue(e.getMessage().startsWith("cannot connect to 127.0.0.1:" + port), e.getMessage());
            assertFalse(e.getMessage().contains("\n"));
        }
    }

    @Test
    void phasesMustComeInOrder() throws Exception {
        try (GuestMemory mem = twoBlocks(); FakeDestination dest = new FakeDestination(Framing.MODERN, 0, -1);
             MigrationSender s = MigrationSender.connect(SenderConfig.builder("127.0.0.1", dest.port()).build(), mem)) {
            assertThrows(IllegalStateException.class, () -> s.iterate(DirtyPages.all(mem)));
            assertThrows(IllegalStateException.class, s::finish);
            s.setup();
            assertThrows(IllegalStateException.class, s::setup);
        }
    }

    @Test
    void generatorIsDeterministicAndMixed() throws Exception {
        try (GuestMemory a = GuestImages.generate(4L << 20, 42, 0.25);
             GuestMemory b = GuestImages.generate(4L << 20, 42, 0.25);
             GuestMemory c = GuestImages.generate(4L << 20, 43, 0.25)) {
            assertEquals(a.digest(), b.digest());
            assertFalse(a.digest().equals(c.digest()));
            RamBlock ram = a.blocks().get(0);
            int zero = 0;
            for (long off = 0; off < ram.length(); off += 4096) {
                if (RamBlock.isZero(ram.guest(), off)) {
                    zero++;
                }
            }
            double ratio = zero / (double) ram.pages();
            assertTrue(ratio > 0.2 && ratio < 0.3, "zero ratio " + ratio);
        }
    }

    /** A destination that accepts every connection but never reads: the watchdog ends the wait. */
    @Test
    void destinationThatStopsReadingIsReportedAsAStall() throws Exception {
        try (ServerSocket ss = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress());
             GuestMemory mem = GuestImages.generate(64L << 20, 1, 0.0)) {
            List<java.net.Socket> held = new CopyOnWriteArrayList<>();
            Thread.ofPlatform().daemon().start(() -> {
                try {
                    while (true) {
                        held.add(ss.accept());
                    }
                } catch (IOException ignored) {
                    // server closed
                }
            });
            long t0 = System.nanoTime();
            try (MigrationSender s = MigrationSender.connect(SenderConfig.builder("127.0.0.1", ss.getLocalPort())
                    .multifd(2).stallTimeout(Duration.ofMillis(800)).build(), mem)) {
                MigrationException e = assertThrows(MigrationException.class, s::migrate);
                assertTrue(e.getMessage().contains("stopped reading"), e.getMessage());
                assertFalse(e.getMessage().contains("\n"));
            }
            assertTrue(System.nanoTime() - t0 < 10_000_000_000L, "detected within seconds");
            for (java.net.Socket h : held) {
                h.close();
            }
        }
    }
}
