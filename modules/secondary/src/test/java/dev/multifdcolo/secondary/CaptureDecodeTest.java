package dev.multifdcolo.secondary;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.Wire;

import java.nio.ByteBuffer;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Every real QEMU capture decodes to the source's RAM, whatever the read splits are. */
class CaptureDecodeTest {

    /** Counts SYNC packets in a channel capture (independently of the decoder under test). */
    static int syncPackets(byte[] ch, Compression comp) {
        ByteBuffer b = ByteBuffer.wrap(ch);
        int pos = Wire.HELLO_LEN;
        int syncs = 0;
        MultifdPacket p = new MultifdPacket();
        while (pos < ch.length) {
            p.wrap(b.position(pos));
            syncs += p.sync() ? 1 : 0;
            int normal = p.normalPages();
            pos += Wire.PACKET_HEADER_LEN + (normal == 0 ? 0 : comp == Compression.NONE ? normal * Wire.PAGE_SIZE : p.nextPacketSize());
        }
        return syncs;
    }

    static Stream<Object[]> cases() {
        return Captures.all().stream().flatMap(c -> Stream.of(
                new Object[]{c, 1}, new Object[]{c, 7}, new Object[]{c, 4093}, new Object[]{c, 70_000}));
    }

    @ParameterizedTest(name = "{0}, chunks up to {1} bytes")
    @MethodSource("cases")
    void decodesToSourceRam(Captures c, int maxChunk) {
        DecoderHarness h = new DecoderHarness(1L << 30);
        h.run(c.mainBytes(), c.channelBytes(), c.compression(), c.flush(), new Random(maxChunk * 31L + c.name().hashCode()),
                maxChunk);
        assertTrue(h.precopyDone, "precopy completed");
        assertEquals("none", h.machine);
        assertArrayEquals(c.expectedRam(), h.ram("ram"), "guest RAM equals the source's");
        assertNotNull(h.vmdesc);
        assertTrue(h.vmdesc.startsWith("{") && h.vmdesc.contains("\"devices\""), "vmdesc JSON kept");
        // device sections: the first is a FULL section and the kept bytes end where EOF was
        assertEquals(0x04, h.deviceState[0]);
        for (byte[] ch : c.channelBytes()) {
            assertEquals(syncPackets(ch, c.compression()), h.barriers, "exactly one barrier per SYNC packet of each channel");
        }
        h.memory.close();
    }
}
