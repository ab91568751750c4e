package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.RejectionRig.Rejects;
import dev.multifdcolo.secondary.RejectionRig.Setup;
import dev.multifdcolo.secondary.StreamBytes.Migration;
import dev.multifdcolo.secondary.StreamBytes.Packet;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import org.junit.jupiter.api.Test;

import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.util.List;

import static dev.multifdcolo.secondary.RejectionRig.rejects;
import static dev.multifdcolo.secondary.RejectionRig.says;
import static dev.multifdcolo.secondary.StreamBytes.CHANNEL_DATA;
import static dev.multifdcolo.secondary.StreamBytes.RAM;
import static dev.multifdcolo.secondary.StreamBytes.RAM_ID;
import static dev.multifdcolo.secondary.StreamBytes.cat;
import static dev.multifdcolo.secondary.StreamBytes.prefix;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * "No wire-supplied length is trusted before it is bounded": each huge length is rejected with
 * its rule, and the run that rejects it allocates (heap and direct memory, measured on this
 * thread) a tiny fraction of what the length claims. Every case also runs in all read splits.
 */
class RejectionBoundsTest {
    /** Far below every claimed size here (the smallest is 256 KiB of device state offered 4 MiB). */
    static final long SMALL = 1 << 20;

    record Cost(long heapBytes, long directBytes, long millis, ProtocolException error) {}

    /** One whole-stream run after a warm-up run, measuring what it allocated. */
    static Cost cost(Rule rule, byte[] main, List<byte[]> channels, Setup s) {
        assertThrows(ProtocolException.class, () -> RejectionRig.run(main, channels, s, RejectionRig.WHOLE).close());
        com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long heap0 = threads.getCurrentThreadAllocatedBytes();
        long direct0 = directMemory();
        long t0 = System.nanoTime();
        ProtocolException e = assertThrows(ProtocolException.class,
                () -> RejectionRig.run(main, channels, s, RejectionRig.WHOLE).close());
        long millis = (System.nanoTime() - t0) / 1_000_000;
        Cost c = new Cost(threads.getCurrentThreadAllocatedBytes() - heap0, directMemory() - direct0, millis, e);
        assertEquals(rule, e.rule(), e.getMessage());
        assertTrue(c.heapBytes() < SMALL, () -> "allocated " + c.heapBytes() + " heap bytes for " + e.getMessage());
        assertTrue(c.directBytes() < SMALL, () -> "allocated " + c.directBytes() + " direct bytes for " + e.getMessage());
        assertTrue(c.millis() < 1000, () -> "took " + c.millis() + " ms for " + e.getMessage());
        return c;
    }

    static long directMemory() {
        long used = 0;
        for (BufferPoolMXBean b : ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)) {
            if (b.getName().equals("direct")) {
                used += b.getMemoryUsed();
            }
        }
        return used;
    }

    @Test
    @Rejects(Rule.MEM_SIZE_LIMIT)
    void memSizeOfTwoToTheSixtyIsRefusedBeforeAnyAllocation() {
        Setup s = Setup.plain();
        for (long total : new long[]{1L << 60, (1L << 62) + (1L << 20)}) {
            byte[] main = cat(prefix().start(RAM_ID, RAM, 0, 4).memSize(total).block(RAM, total).eos().footer(RAM_ID).toBytes(),
                    RejectionMainStreamTest.afterSetup());
            says(cost(Rule.MEM_SIZE_LIMIT, main, List.of(), s).error(), "exceeds the limit of 67108864 bytes");
            says(rejects(Rule.MEM_SIZE_LIMIT, main, s), "RAM of " + total);
        }
        // the same total spread over two blocks: still one check on the announced list, no allocation
        long half = 1L << 59;
        byte[] two = cat(prefix().start(RAM_ID, RAM, 0, 4).memSize(2 * half).block(RAM, half).block("pc.ram", half).eos()
                .footer(RAM_ID).toBytes(), RejectionMainStreamTest.afterSetup());
        cost(Rule.MEM_SIZE_LIMIT, two, List.of(), s);
        // just over the configured maximum
        says(rejects(Rule.MEM_SIZE_LIMIT, RejectionMainStreamTest.PLAIN.main(), s.withLimits((1L << 20) - 4096, 64L << 20, 16 << 20)),
                "exceeds the limit of 1044480 bytes");
    }

    @Test
    @Rejects(Rule.VMDESC_LIMIT)
    void vmdescriptionOf2GiBIsRefusedBeforeAnyAllocation() {
        List<byte[]> p = RejectionMainStreamTest.PLAIN.mainParts();
        byte[] main = cat(p.get(0), p.get(1), p.get(2), new StreamBytes().eof().u8(0x06).be32(0x7fffffff)
                .bytes("{\"page_size\": 4096".getBytes()).toBytes());
        says(cost(Rule.VMDESC_LIMIT, main, List.of(), Setup.plain()).error(), "VMDESCRIPTION of 2147483647 bytes (bound 16777216)");
    }

    @Test
    @Rejects(Rule.CONFIG_MACHINE)
    void machineNameOf2GiBIsRefusedBeforeAnyAllocation() {
        for (int len : new int[]{0x7fffffff, 0x80000000}) {
            byte[] main = cat(new StreamBytes().header().u8(0x07).be32(len).bytes("none".getBytes()).toBytes(),
                    RejectionMainStreamTest.afterConfiguration());
            says(cost(Rule.CONFIG_MACHINE, main, List.of(), Setup.plain()).error(),
                    "machine type name length " + Integer.toUnsignedString(len));
        }
    }

    @Test
    @Rejects(Rule.PACKET_PAYLOAD_SIZE)
    void compressedPacketSizeOverTheBoundIsRefusedBeforeAnyAllocation() {
        for (Compression c : new Compression[]{Compression.ZLIB, Compression.ZSTD}) {
            Migration m = StreamBytes.multifd(2, FlushMode.LEGACY, c);
            for (int size : new int[]{(1 << 20) + 1, 0x7fffffff, 0xffffffff}) {
                // on channel 0, which is read first: a valid compressed packet before it would
                // allocate the channel's fixed 1 MiB + 512 KiB (de)compression buffers
                Packet p = StreamBytes.data(1, 0x10000, 0x13000);
                p.flags = c.flagBits;
                p.payload = StreamBytes.compress(c, p.payload);
                p.nextPacketSize = size;
                Migration bad = m.withChannelPart(0, CHANNEL_DATA, p.bytes());
                says(cost(Rule.PACKET_PAYLOAD_SIZE, bad.main(), bad.channels(), Setup.of(bad)).error(),
                        "compressed payload of " + Integer.toUnsignedString(size) + " bytes");
            }
        }
    }

    @Test
    @Rejects(Rule.DEVICE_STATE_LIMIT)
    void deviceStateGrowingPastTheBoundStopsAtTheBound() {
        int bound = 256 << 10;
        Setup s = Setup.plain().withLimits(64L << 20, bound, 16 << 20);
        // 4 MiB of device section bytes that never reach a valid end
        byte[] dev = new StreamBytes().full(0, "timer", 0, 2).bytes(new byte[4 << 20]).toBytes();
        byte[] main = RejectionMainStreamTest.PLAIN.withMainPart(3, dev).main();
        Cost c = cost(Rule.DEVICE_STATE_LIMIT, main, List.of(), s);
        says(c.error(), "device state exceeds 262144 bytes without a valid end");
        says(rejects(Rule.DEVICE_STATE_LIMIT, main, s), "exceeds 262144 bytes");
        // a VMDESCRIPTION claiming 2 GiB after the device sections: the device bound still holds
        byte[] sections = RejectionMainStreamTest.PLAIN.mainParts().get(3);
        int trailer = new StreamBytes().eof().vmdesc(StreamBytes.VMDESC).size();
        byte[] hugeDesc = cat(java.util.Arrays.copyOf(sections, sections.length - trailer),
                new StreamBytes().eof().u8(0x06).be32(0x7fffffff).bytes(new byte[bound]).toBytes());
        byte[] main2 = RejectionMainStreamTest.PLAIN.withMainPart(3, hugeDesc).main();
        cost(Rule.DEVICE_STATE_LIMIT, main2, List.of(), s);
        says(rejects(Rule.DEVICE_STATE_LIMIT, main2, s), "exceeds 262144 bytes");
    }

    @Test
    @Rejects({Rule.PACKET_PAGES_ALLOC, Rule.PACKET_NORMAL_PAGES, Rule.PACKET_ZERO_PAGES})
    void pageCountsOfFourBillionAreRefusedBeforeAnyAllocation() {
        Migration m = RejectionMultifdTest.LEGACY;
        Packet alloc = RejectionMultifdTest.data();
        alloc.pagesAlloc = 0xffffffff;
        Packet normal = RejectionMultifdTest.data();
        normal.normal = 0xffffffff;
        Packet zero = RejectionMultifdTest.data();
        zero.zero = 0xffffffff;
        Object[][] cases = {{Rule.PACKET_PAGES_ALLOC, alloc}, {Rule.PACKET_NORMAL_PAGES, normal}, {Rule.PACKET_ZERO_PAGES, zero}};
        for (Object[] c : cases) {
            Migration bad = m.withChannelPart(1, CHANNEL_DATA, ((Packet) c[1]).bytes());
            cost((Rule) c[0], bad.main(), bad.channels(), Setup.of(bad));
        }
        // and a RAM record offset of 2^63 in the main channel
        byte[] main = RejectionMainStreamTest.withPart(new StreamBytes().part(RAM_ID).zero(RAM, 0x8000000000000000L).eos()
                .footer(RAM_ID));
        cost(Rule.RAM_OFFSET, main, List.of(), Setup.plain());
    }
}
