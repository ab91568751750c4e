package dev.multifdcolo.secondary.colo;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.secondary.stream.MainStreamDecoder;
import dev.multifdcolo.secondary.stream.MultifdChannelDecoder;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.MultifdHello;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.encode.StreamWriter;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The seed patch's behaviours, one by one: precopy mirroring of normal and zero pages, and
 * recording of normal and zero pages in COLO state — through both decoders (multifd packets and
 * main-channel records), since both must route pages the same way (§9.6, §9.7).
 */
class PageRouterTest {
    static final int P = Wire.PAGE_SIZE;

    static GuestMemory colo(int pages) throws Exception {
        GuestMemory m = GuestMemory.allocate(List.of(new BlockSpec("ram", (long) pages * P)), 1L << 30, Backing.anonymous());
        m.enableColo(Backing.anonymous());
        return m;
    }

    static byte[] page(int seed) {
        byte[] b = new byte[P];
        new java.util.Random(seed).nextBytes(b);
        return b;
    }

    static byte[] at(MemorySegment s, long off) {
        return s.asSlice(off, P).toArray(ValueLayout.JAVA_BYTE);
    }

    static void fill(MemorySegment s, long off, byte v) {
        s.asSlice(off, P).fill(v);
    }

    /** A multifd channel: hello + one packet with 2 normal pages (0x3000, 0x1000) and 1 zero page (0x5000). */
    static ByteBuffer multifdStream(byte[] p1, byte[] p2) {
        ByteBuffer b = ByteBuffer.allocate(Wire.HELLO_LEN + Wire.PACKET_HEADER_LEN + 2 * P);
        MultifdHello.encode(b, new byte[16], 0);
        MultifdPacket.encode(b, 0, 128, 2, 1, 2 * P, 7, "ram", new long[]{0x3000, 0x1000, 0x5000});
        b.put(p1).put(p2).flip();
        return b;
    }

    static MultifdChannelDecoder multifd(PageRouter r) {
        return new MultifdChannelDecoder(1, new byte[16], Compression.NONE, r, new MultifdChannelDecoder.Listener() {
            @Override
            public void onHello(int id) {
            }

            @Override
            public void onSync(int id) {
            }

            @Override
            public void onPacket(int id, int normal, int zero, long payload) {
            }
        });
    }

    @Test
    void precopyMirrorsNormalPagesAtTheBarrierAndZeroesBothCopies() throws Exception {
        try (GuestMemory m = colo(16)) {
            RamBlock b = m.block("ram");
            PageRouter r = new PageRouter();
            r.memory(m);
            r.mode(PageRouter.Mode.COLO_PRECOPY);
            fill(b.guest(), 0x5000, (byte) 0x55);
            fill(b.cache(), 0x5000, (byte) 0x55);
            byte[] p1 = page(1);
            byte[] p2 = page(2);
            assertEquals(Progress.NEED_MORE, multifd(r).feed(multifdStream(p1, p2)));
            // normal pages land in the cache and are marked for the round's copy to the guest
            assertArrayEquals(p1, at(b.cache(), 0x3000));
            assertArrayEquals(p2, at(b.cache(), 0x1000));
            assertArrayEquals(new byte[P], at(b.guest(), 0x3000));
            assertTrue(b.bitmap().isSet(3) && b.bitmap().isSet(1));
            assertFalse(b.bitmap().isSet(5), "zero pages need no copy");
            // zero pages are zeroed in both, at once
            assertArrayEquals(new byte[P], at(b.guest(), 0x5000));
            assertArrayEquals(new byte[P], at(b.cache(), 0x5000));
            // the barrier's copy (what the workers run) makes guest == cache and clears the marks
            MemoryWorkerVerticle.run(new MemoryJob.Flush(b, 0, b.bitmap().wordCount()));
            assertArrayEquals(p1, at(b.guest(), 0x3000));
            assertArrayEquals(p2, at(b.guest(), 0x1000));
            assertEquals(0, b.bitmap().dirtyPages());
            assertArrayEquals(b.cache().toArray(ValueLayout.JAVA_BYTE), b.guest().toArray(ValueLayout.JAVA_BYTE));
        }
    }

    /** A page received twice in one round: the barrier copies the last version (no job races). */
    @Test
    void precopyDuplicatePageInOneRoundEndsWithTheLastVersion() throws Exception {
        try (GuestMemory m = colo(16)) {
            RamBlock b = m.block("ram");
            PageRouter r = new PageRouter();
            r.memory(m);
            r.mode(PageRouter.Mode.COLO_PRECOPY);
            MultifdChannelDecoder d = multifd(r);
            ByteBuffer first = multifdStream(page(10), page(11));
            d.feed(first);
            // a second packet, same pages, new content (7.2 sends duplicates)
            ByteBuffer second = ByteBuffer.allocate(Wire.PACKET_HEADER_LEN + 2 * P);
            MultifdPacket.encode(second, 0, 128, 2, 0, 2 * P, 8, "ram", new long[]{0x3000, 0x1000});
            byte[] v2a = page(12);
            byte[] v2b = page(13);
            second.put(v2a).put(v2b).flip();
            d.feed(second);
            MemoryWorkerVerticle.run(new MemoryJob.Flush(b, 0, b.bitmap().wordCount()));
            assertArrayEquals(v2a, at(b.guest(), 0x3000));
            assertArrayEquals(v2b, at(b.guest(), 0x1000));
        }
    }

    @Test
    void coloStateRecordsNormalAndZeroPagesAndLeavesTheGuestAlone() throws Exception {
        try (GuestMemory m = colo(16)) {
            RamBlock b = m.block("ram");
            PageRouter r = new PageRouter();
            r.memory(m);
            r.mode(PageRouter.Mode.COLO_STATE);
            fill(b.guest(), 0x5000, (byte) 0x55);
            fill(b.cache(), 0x5000, (byte) 0x55);
            byte[] p1 = page(3);
            byte[] p2 = page(4);
            multifd(r).feed(multifdStream(p1, p2));
            assertArrayEquals(p1, at(b.cache(), 0x3000));
            assertArrayEquals(new byte[P], at(b.guest(), 0x3000), "the guest image is untouched until the flush");
            assertArrayEquals(new byte[P], at(b.cache(), 0x5000));
            assertEquals(0x55, at(b.guest(), 0x5000)[0], "a zero page does not touch the guest either");
            assertTrue(b.bitmap().isSet(3) && b.bitmap().isSet(1) && b.bitmap().isSet(5));
            assertEquals(3, b.bitmap().dirtyPages());
            dev.multifdcolo.memory.ColoFlush.flush(b, 0, b.bitmap().wordCount());
            assertArrayEquals(p1, at(b.guest(), 0x3000));
            assertArrayEquals(p2, at(b.guest(), 0x1000));
            assertArrayEquals(new byte[P], at(b.guest(), 0x5000));
        }
    }

    /** Main-channel PAGE and ZERO records take the same route as multifd pages, in every mode. */
    @Test
    void mainChannelRecordsAreRoutedLikeMultifdPages() throws Exception {
        for (PageRouter.Mode mode : PageRouter.Mode.values()) {
            byte[] p1 = page(5);
            MemorySegment src = MemorySegment.ofArray(p1);
            StreamWriter w = StreamWriter.buffered(1 << 16);
            w.header().configuration("none").sectionStart(1, "ram", 0, 4).ramMemSize(new String[]{"ram"}, new long[]{16L * P})
                    .ramEos().footer(1)
                    .sectionPart(1).ramPage("ram", 0x2000, src, 0).ramZero("ram", 0x4000).ramEos().footer(1);
            GuestMemory[] mem = new GuestMemory[1];
            PageRouter r = new PageRouter();
            MainStreamDecoder d = new MainStreamDecoder(new MainStreamDecoder.Options(0, FlushMode.AUTO, 1 << 20, 1 << 20,
                    null, new byte[16]), r, new MainStreamDecoder.Listener() {


                @Override
                public void onMemSize(List<BlockSpec> blocks) {
                    try {
                        mem[0] = GuestMemory.allocate(blocks, 1L << 30, Backing.anonymous());
                        if (mode != PageRouter.Mode.PLAIN) {
                            mem[0].enableColo(Backing.anonymous());
                        }
                        RamBlock b = mem[0].block("ram");
                        fill(b.guest(), 0x4000, (byte) 0x77);
                        if (b.cache() != null) {
                            fill(b.cache(), 0x4000, (byte) 0x77);
                        }
                    } catch (Exception e) {
                        throw new IllegalStateException(e);
                    }
                    r.memory(mem[0]);
                    r.mode(mode);
                }

                @Override
                public boolean onBarrier() {
                    return false;
                }




            });
            assertEquals(Progress.NEED_MORE, d.feed(ByteBuffer.wrap(w.toByteArray())));
            RamBlock b = mem[0].block("ram");
            switch (mode) {
                case PLAIN -> {
                    assertArrayEquals(p1, at(b.guest(), 0x2000));
                    assertArrayEquals(new byte[P], at(b.guest(), 0x4000));
                }
                case COLO_PRECOPY -> {
                    assertArrayEquals(p1, at(b.cache(), 0x2000));
                    assertTrue(b.bitmap().isSet(2));
                    MemoryWorkerVerticle.run(new MemoryJob.Flush(b, 0, b.bitmap().wordCount()));
                    assertArrayEquals(p1, at(b.guest(), 0x2000));
                    assertArrayEquals(new byte[P], at(b.guest(), 0x4000));
                    assertArrayEquals(new byte[P], at(b.cache(), 0x4000));
                    assertEquals(0, b.bitmap().dirtyPages());
                }
                case COLO_STATE -> {
                    assertArrayEquals(p1, at(b.cache(), 0x2000));
                    assertArrayEquals(new byte[P], at(b.guest(), 0x2000));
                    assertEquals(0x77, at(b.guest(), 0x4000)[0]);
                    assertArrayEquals(new byte[P], at(b.cache(), 0x4000));
                    assertTrue(b.bitmap().isSet(2) && b.bitmap().isSet(4));
                    assertFalse(b.bitmap().isSet(3));
                }
            }
            mem[0].close();
        }
    }
}
