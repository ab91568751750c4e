package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.MemoryLimitException;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.secondary.stream.MainStreamDecoder;
import dev.multifdcolo.secondary.stream.MultifdChannelDecoder;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.secondary.stream.RamSink;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Function;
import java.util.function.IntSupplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Drives the real main-channel and multifd decoders without a network, like {@link DecoderHarness},
 * but with every {@link MainStreamDecoder.Options option} settable (expected machine, device-state
 * and vmdesc bounds, UUID) and with explicit read splits: the whole stream at once, 1-byte reads,
 * fixed odd sizes and seeded random sizes, alternating heap buffers at non-zero positions and
 * direct buffers.
 *
 * <p>The rig itself never invents a {@link ProtocolException}: a stream that the decoders accept
 * but a session would reject (a channel ending before its SYNC, an unpaired SYNC) is an
 * {@link AssertionError} here, so a test that expects a rule can only pass on the decoders' own
 * rejection. The one mirrored session rule is MEM_SIZE_LIMIT: the listener allocates memory
 * exactly as {@code IncomingMigration} does.
 */
final class RejectionRig implements RamSink {

    /** Names the rules a test method proves; {@link RejectionCoverageTest} checks every rule has one. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.METHOD)
    @interface Rejects {
        Rule[] value();
    }

    /** The receiver's settings for one run. */
    record Setup(int channels, Compression compression, FlushMode flush, long maxRam, long maxDeviceState, int maxVmdesc,
                 String expectedMachine, byte[] uuid) {

        static Setup of(StreamBytes.Migration m) {
            return new Setup(m.channelCount(), m.compression(), m.flush(), 64L << 20, 64L << 20, 16 << 20, null, new byte[16]);
        }

        static Setup plain() {
            return of(StreamBytes.plain());
        }

        Setup withFlush(FlushMode f) {
            return new Setup(channels, compression, f, maxRam, maxDeviceState, maxVmdesc, expectedMachine, uuid);
        }

        Setup withCompression(Compression c) {
            return new Setup(channels, c, flush, maxRam, maxDeviceState, maxVmdesc, expectedMachine, uuid);
        }

        Setup withLimits(long ram, long deviceState, int vmdesc) {
            return new Setup(channels, compression, flush, ram, deviceState, vmdesc, expectedMachine, uuid);
        }

        Setup withMachine(String m) {
            return new Setup(channels, compression, flush, maxRam, maxDeviceState, maxVmdesc, m, uuid);
        }

        Setup withUuid(byte[] u) {
            return new Setup(channels, compression, flush, maxRam, maxDeviceState, maxVmdesc, expectedMachine, u);
        }
    }

    /** How a stream is cut into reads. {@code fixed > 0}: every read has that size; else random sizes. */
    record Split(String name, int fixed, int randomMax, boolean odd, long seed) {
        IntSupplier sizes(int stream) {
            if (fixed > 0) {
                return () -> fixed;
            }
            Random r = new Random(seed * 7919 + stream);
            return odd ? () -> 2 * r.nextInt((randomMax + 1) / 2) + 1 : () -> 1 + r.nextInt(randomMax);
        }

        boolean whole() {
            return fixed == Integer.MAX_VALUE;
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static final Split WHOLE = new Split("whole", Integer.MAX_VALUE, 0, false, 0);

    /** Every bad stream goes through all of these. */
    static final List<Split> SPLITS = List.of(
            WHOLE,
            new Split("1-byte", 1, 0, false, 0),
            new Split("3-byte", 3, 0, false, 0),
            new Split("7-byte", 7, 0, false, 0),
            new Split("13-byte", 13, 0, false, 0),
            new Split("1021-byte", 1021, 0, false, 0),
            new Split("random odd <= 127, seed 1", 0, 127, true, 1),
            new Split("random odd <= 127, seed 2", 0, 127, true, 2),
            new Split("random odd <= 4095, seed 3", 0, 4095, true, 3),
            new Split("random <= 9000, seed 4", 0, 9000, false, 4));

    /** What a completed run produced. The caller closes {@link #memory}. */
    record Outcome(GuestMemory memory, String machine, byte[] deviceState, String vmdesc, int barriers,
                   List<Command> commands) implements AutoCloseable {
        byte[] ram() {
            return memory.block(StreamBytes.RAM).guest().toArray(ValueLayout.JAVA_BYTE);
        }

        @Override
        public void close() {
            if (memory != null) {
                memory.close();
            }
        }
    }

    // ------------------------------------------------------------------ assertions

    /**
     * Feeds the streams in every split and asserts each run fails with {@code rule}, with the same
     * one-line message every time ({@code rule-id: detail}).
     *
     * @return the rejection of the whole-stream run, for message checks
     */
    static ProtocolException rejects(Rule rule, byte[] main, List<byte[]> channels, Setup setup) {
        ProtocolException first = null;
        for (Split split : SPLITS) {
            ProtocolException e = null;
            try (Outcome o = run(main, channels, setup, split)) {
                fail(split + ": stream accepted, expected " + rule + " (" + o.barriers() + " barriers)");
            } catch (ProtocolException pe) {
                e = pe;
            }
            ProtocolException got = e;
            assertEquals(rule, got.rule(), () -> split + ": wrong rule: " + got.getMessage());
            assertTrue(got.getMessage().startsWith(rule.id() + ": ") && got.getMessage().length() > rule.id().length() + 12,
                    () -> split + ": message is not 'rule-id: detail': " + got.getMessage());
            if (first == null) {
                first = got;
            } else {
                assertEquals(first.getMessage(), got.getMessage(), split + ": message differs from the whole-stream run");
            }
        }
        viaDecoderHarness(first, main, channels, setup);
        return first;
    }

    /**
     * The team's {@link DecoderHarness} must see the same rejection where it can run the case: its
     * options are fixed (64 MiB device state, 16 MiB vmdesc, no expected machine) and it reports a
     * channel that ends early as its own sync-protocol error, so close-related rules are left out.
     */
    private static void viaDecoderHarness(ProtocolException expected, byte[] main, List<byte[]> channels, Setup s) {
        Rule rule = expected.rule();
        if (s.maxDeviceState() != 64L << 20 || s.maxVmdesc() != 16 << 20 || s.expectedMachine() != null
                || s.channels() != channels.size() || rule == Rule.CHANNEL_TRUNCATED || rule == Rule.CHANNEL_CLOSED) {
            return;
        }
        for (int maxChunk : new int[]{1, 7, 4093, 1 << 20}) {
            DecoderHarness h = new DecoderHarness(s.maxRam());
            try {
                h.run(main, channels, s.compression(), s.flush(), new Random(maxChunk), maxChunk, s.uuid());
                fail("DecoderHarness, chunks <= " + maxChunk + ": stream accepted, expected " + rule);
            } catch (ProtocolException e) {
                assertEquals(expected.getMessage(), e.getMessage(), "DecoderHarness, chunks <= " + maxChunk);
            } finally {
                if (h.memory != null) {
                    h.memory.close();
                }
            }
        }
    }

    static ProtocolException rejects(Rule rule, byte[] main, Setup setup) {
        return rejects(rule, main, List.of(), setup);
    }

    static ProtocolException rejects(Rule rule, StreamBytes.Migration m) {
        return rejects(rule, m.main(), m.channels(), Setup.of(m));
    }

    /** Asserts {@code detail} appears in the message (a message must say what was wrong). */
    static void says(ProtocolException e, String... details) {
        for (String d : details) {
            assertTrue(e.getMessage().contains(d), () -> "message lacks '" + d + "': " + e.getMessage());
        }
    }

    /** Feeds a valid migration in every split and asserts the RAM it must produce. */
    static void accepts(StreamBytes.Migration m, Setup setup) {
        for (Split split : SPLITS) {
            try (Outcome o = run(m.main(), m.channels(), setup, split)) {
                assertArrayEquals(m.ram(), o.ram(), split + ": RAM differs");
                assertEquals(StreamBytes.MACHINE, o.machine());
                assertEquals(StreamBytes.VMDESC, o.vmdesc());
            }
        }
    }

    // ------------------------------------------------------------------ the run

    private GuestMemory memory;
    private final long maxRam;

    private RejectionRig(long maxRam) {
        this.maxRam = maxRam;
    }

    /**
     * One run: the main decoder reads until it pauses at a barrier; then every channel reads up to
     * its SYNC; then the barrier is released (§4.3 pairing). Throws the decoders' ProtocolException.
     */
    static Outcome run(byte[] main, List<byte[]> channels, Setup s, Split split) {
        RejectionRig rig = new RejectionRig(s.maxRam());
        int n = channels.size();
        boolean[] arrived = new boolean[n];
        boolean[] bound = new boolean[Math.max(1, s.channels())];
        MultifdChannelDecoder[] ch = new MultifdChannelDecoder[n];
        int[] barriers = {0};
        boolean[] barrierPending = {false};
        String[] machine = {null};
        Object[] end = {null, null};
        boolean[] done = {false};
        List<Command> commands = new ArrayList<>();
        boolean ok = false;
        try {
            for (int i = 0; i < n; i++) {
                int idx = i;
                ch[i] = new MultifdChannelDecoder(s.channels(), s.uuid(), s.compression(), rig, new MultifdChannelDecoder.Listener() {
                    @Override
                    public void onHello(int id) {
                        if (bound[id]) {
                            throw new AssertionError("rig: two hellos with id " + id + " (a session rule, not a decoder one)");
                        }
                        bound[id] = true;
                    }

                    @Override
                    public void onSync(int id) {
                        arrived[idx] = true;
                    }

                    @Override
                    public void onPacket(int id, int normal, int zero, long payload) {
                    }
                });
            }
            MainStreamDecoder md = new MainStreamDecoder(new MainStreamDecoder.Options(s.channels(), s.flush(),
                    s.maxDeviceState(), s.maxVmdesc(), s.expectedMachine(), s.uuid()), rig, new MainStreamDecoder.Listener() {
                @Override
                public void onConfiguration(String m) {
                    machine[0] = m;
                }

                @Override
                public void onCommand(Command command, ByteBuffer data) {
                    commands.add(command);
                }

                @Override
                public void onMemSize(List<BlockSpec> blocks) {
                    rig.allocate(blocks);
                }

                @Override
                public boolean onBarrier() {
                    barriers[0]++;
                    barrierPending[0] = true;
                    return true;
                }



                @Override
                public void onPrecopyEnd(byte[] deviceState, String vmdesc) {
                    end[0] = deviceState;
                    end[1] = vmdesc;
                    done[0] = true;
                }

                @Override
                public void onLiveStateEnd() {
                    throw new AssertionError("rig: live state end during precopy");
                }
            });
            Feeder mainIn = new Feeder(main, split, 0);
            Feeder[] in = new Feeder[n];
            for (int i = 0; i < n; i++) {
                in[i] = new Feeder(channels.get(i), split, i + 1);
            }
            while (true) {
                Progress p = Progress.NEED_MORE;
                while (!mainIn.done()) {
                    p = mainIn.feed(md::feed);
                    if (p != Progress.NEED_MORE) {
                        break;
                    }
                }
                if (p == Progress.DONE || !barrierPending[0]) {
                    break;
                }
                for (int i = 0; i < n; i++) {
                    while (!arrived[i] && !in[i].done()) {
                        in[i].feed(ch[i]::feed);
                    }
                    if (!arrived[i]) {
                        ch[i].onClose();       // the decoder's verdict on where the channel ended
                        throw new AssertionError("rig: channel " + i + " ended before its SYNC while the main channel waits"
                                + " at barrier " + barriers[0] + " (a session would fail with sync-protocol)");
                    }
                }
                java.util.Arrays.fill(arrived, false);
                barrierPending[0] = false;
                md.resume();
            }
            if (!done[0]) {
                md.onClose();
                if (!done[0]) {
                    throw new AssertionError("rig: main channel ended without completing and without an error");
                }
            }
            for (int i = 0; i < n; i++) {
                while (!in[i].done()) {
                    if (in[i].feed(ch[i]::feed) == Progress.PAUSED) {
                        throw new AssertionError("rig: channel " + i + " sent a SYNC after the last barrier");
                    }
                }
                ch[i].onClose();
            }
            ok = true;
            return new Outcome(rig.memory, machine[0], (byte[]) end[0], (String) end[1], barriers[0], commands);
        } finally {
            for (MultifdChannelDecoder d : ch) {
                if (d != null) {
                    d.close();
                }
            }
            if (!ok && rig.memory != null) {
                rig.memory.close();
            }
        }
    }

    /** Exactly what IncomingMigration's listener does with the RAMBlock list. */
    private void allocate(List<BlockSpec> blocks) {
        try {
            memory = GuestMemory.allocate(blocks, maxRam, Backing.anonymous());
        } catch (MemoryLimitException e) {
            throw new ProtocolException(Rule.MEM_SIZE_LIMIT, e.getMessage());
        }
    }

    /** Hands out one stream's bytes in the split's read sizes. */
    static final class Feeder {
        private final byte[] data;
        private final boolean whole;
        private final IntSupplier sizes;
        private int pos;
        private int reads;
        private ByteBuffer cur;

        Feeder(byte[] data, Split split, int stream) {
            this.data = data;
            this.whole = split.whole();
            this.sizes = split.sizes(stream);
        }

        boolean done() {
            return pos >= data.length && (cur == null || !cur.hasRemaining());
        }

        Progress feed(Function<ByteBuffer, Progress> decoder) {
            if (cur == null || !cur.hasRemaining()) {
                int n = Math.min(data.length - pos, sizes.getAsInt());
                if (whole) {
                    cur = ByteBuffer.wrap(data, pos, n);
                } else if ((reads++ & 1) == 0) {
                    cur = ByteBuffer.wrap(data, pos, n);          // heap, position != 0
                } else {
                    cur = ByteBuffer.allocateDirect(n);           // direct, like Netty's
                    cur.put(data, pos, n).flip();
                }
                pos += n;
            }
            return decoder.apply(cur);
        }
    }

    // ------------------------------------------------------------------ RamSink

    @Override
    public RamBlock block(String name) {
        return memory == null ? null : memory.block(name);
    }

    @Override
    public MemorySegment pageTarget(RamBlock block) {
        return block.guest();
    }

    @Override
    public void zeroPages(RamBlock block, long[] offsets, int from, int count) {
        for (int i = from; i < from + count; i++) {
            block.zeroPage(offsets[i]);
        }
    }

    @Override
    public void normalPagesWritten(RamBlock block, long[] offsets, int from, int count) {
    }
}
