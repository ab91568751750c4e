package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.RejectionRig.Setup;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import org.junit.jupiter.api.Test;

import java.lang.management.ManagementFactory;
import java.util.List;

import static dev.multifdcolo.secondary.StreamBytes.cat;
import static dev.multifdcolo.secondary.StreamBytes.prefix;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Device state full of possible VMDESCRIPTION starts ({@code 00 06} + a length) costs heap in
 * proportion to the configured device-state bound, not ~30 bytes per byte received: the decoder
 * used to index every candidate in a map of boxed lists (256 MB of heap for 8 MiB of such bytes,
 * about 2 GB within the default 64 MiB bound).
 */
class DeviceStateBoundsTest {
    static final int N = 8 << 20;

    /** A FULL section header, then {@code N} bytes of {@code 00 06 be32(len)} repeated. */
    static byte[] stream(int len) {
        byte[] dev = new byte[N];
        for (int p = 0; p + 6 <= N; p += 6) {
            dev[p + 1] = 6;
            dev[p + 2] = (byte) (len >>> 24);
            dev[p + 3] = (byte) (len >>> 16);
            dev[p + 4] = (byte) (len >>> 8);
            dev[p + 5] = (byte) len;
        }
        return cat(prefix().ramSetup(false).toBytes(), new StreamBytes().full(0, "timer", 0, 2).toBytes(), dev);
    }

    static long heapOf(Rule rule, byte[] main, Setup s, String message) {
        com.sun.management.ThreadMXBean t = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long a0 = t.getCurrentThreadAllocatedBytes();
        ProtocolException e = assertThrows(ProtocolException.class,
                () -> RejectionRig.run(main, List.of(), s, RejectionRig.SPLITS.get(9)).close());
        long heap = t.getCurrentThreadAllocatedBytes() - a0;
        assertEquals(rule, e.rule(), e.getMessage());
        assertTrue(e.getMessage().contains(message), e.getMessage());
        return heap;
    }

    @Test
    void shortLivedCandidatesCostNoHeapPerByte() {
        // len 2: each candidate ends 8 bytes later and is dropped once the bytes pass it
        long heap = heapOf(Rule.DEVICE_STATE_END, stream(2), Setup.plain().withLimits(64L << 20, 16L << 20, 16 << 20),
                "without EOF + VMDESCRIPTION");
        // the kept device bytes themselves (grown by doubling up to the 16 MiB bound) are the cost
        assertTrue(heap < 3L * (16 << 20), "heap " + heap + " for " + N + " device bytes");
    }

    @Test
    void longLivedCandidatesAreCappedWithANamedRejection() {
        // len 4 MiB: each candidate stays possible for 4 MiB; past bound / 64 pending ones the stream is refused
        long heap = heapOf(Rule.DEVICE_STATE_END, stream(4 << 20), Setup.plain().withLimits(64L << 20, 16L << 20, 16 << 20),
                "possible VMDESCRIPTION starts");
        assertTrue(heap < 3L * (16 << 20), "heap " + heap);
    }
}
