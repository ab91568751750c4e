package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.RejectionRig.Rejects;
import dev.multifdcolo.secondary.colo.ColoChannel;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.secondary.stream.MainStreamDecoder;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.secondary.stream.RamSink;
import dev.multifdcolo.wire.ColoMessage;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static dev.multifdcolo.secondary.StreamBytes.PAGE;
import static dev.multifdcolo.secondary.StreamBytes.RAM;
import static dev.multifdcolo.secondary.StreamBytes.RAM_ID;
import static dev.multifdcolo.secondary.StreamBytes.cat;
import static dev.multifdcolo.secondary.StreamBytes.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * COLO rules (§9.2, §9.4, §9.9). At decoder level: {@link ColoChannel} on top of a main decoder
 * that finished a valid precopy, fed one checkpoint with one defect in every read split. Over TCP:
 * a COLO replica that received a real 7.2 COLO primary's precopy (and, in one case, a committed
 * checkpoint) fails over on the defect and keeps the last committed image byte for byte — in
 * COLO state a rejection is a failover, never a lost image.
 */
class RejectionColoTest {

    // ------------------------------------------------------------------ checkpoint bytes (§9.4)

    static StreamBytes msg(StreamBytes b, ColoMessage m) {
        return b.be32(m.value());
    }

    /** The live state of one checkpoint: one PAGE at 0x6000 in a RAM PART, then EOF. */
    static StreamBytes liveState() {
        return new StreamBytes().part(RAM_ID).page(RAM, 0x6000, pattern(0x6000)).eos().footer(RAM_ID).eof();
    }

    /** REQUEST, VMSTATE_SEND, {@code live}, VMSTATE_SIZE, be64 size, blob. */
    static byte[] checkpoint(StreamBytes live, long size, byte[] blob) {
        StreamBytes b = new StreamBytes();
        msg(b, ColoMessage.CHECKPOINT_REQUEST);
        msg(b, ColoMessage.VMSTATE_SEND);
        b.bytes(live.toBytes());
        msg(b, ColoMessage.VMSTATE_SIZE);
        return b.be64(size).bytes(blob).toBytes();
    }

    static final byte[] BLOB = "device state blob, ends with EOF\0".getBytes();

    static byte[] validCheckpoint() {
        return checkpoint(liveState(), BLOB.length, BLOB);
    }

    // ------------------------------------------------------------------ decoder level

    /** RAM sink + main decoder listener for one run. */
    static final class Run implements RamSink {
        GuestMemory memory;
        int checkpoints;

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

        /** A plain precopy to its end, then {@code colo} through a ColoChannel in {@code split}. */
        void feed(byte[] colo, long maxBlob, RejectionRig.Split split) {
            MainStreamDecoder md = new MainStreamDecoder(new MainStreamDecoder.Options(0, FlushMode.LEGACY, 64L << 20, 16 << 20,
                    null, new byte[16]), this, new MainStreamDecoder.Listener() {


                @Override
                public void onMemSize(List<BlockSpec> blocks) {
                    try {
                        memory = GuestMemory.allocate(blocks, 64L << 20, Backing.anonymous());
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                }

                @Override
                public boolean onBarrier() {
                    return false;
                }




            });
            assertEquals(Progress.DONE, md.feed(ByteBuffer.wrap(RejectionMainStreamTest.PLAIN.main())));
            ColoChannel cc = new ColoChannel(md, maxBlob, new ColoChannel.Listener() {
                @Override
                public void onRequest() {
                }

                @Override
                public void onVmstateSend() {
                }


                @Override
                public void onDeviceState(byte[] blob) {
                    assertArrayEquals(BLOB, blob);
                    checkpoints++;
                }
            });
            RejectionRig.Feeder in = new RejectionRig.Feeder(colo, split, 0);
            while (!in.done()) {
                in.feed(cc::feed);
                if (cc.flushing()) {
                    cc.checkpointDone();       // the session's flush and commit, instantly
                }
            }
        }

        void close() {
            if (memory != null) {
                memory.close();
            }
        }
    }

    static ProtocolException coloRejects(Rule rule, byte[] colo, long maxBlob) {
        ProtocolException first = null;
        for (RejectionRig.Split split : RejectionRig.SPLITS) {
            Run run = new Run();
            try {
                run.feed(colo, maxBlob, split);
                fail(split + ": accepted, expected " + rule);
            } catch (ProtocolException e) {
                assertEquals(rule, e.rule(), () -> split + ": " + e.getMessage());
                if (first == null) {
                    first = e;
                } else {
                    assertEquals(first.getMessage(), e.getMessage(), split.name());
                }
            } finally {
                run.close();
            }
        }
        return first;
    }

    @Test
    void validCheckpointsAreAccepted() {
        for (RejectionRig.Split split : RejectionRig.SPLITS) {
            Run run = new Run();
            try {
                run.feed(cat(validCheckpoint(), validCheckpoint()), 1 << 20, split);
                assertEquals(2, run.checkpoints, split.name());
                assertArrayEquals(pattern(0x6000), run.memory.block(RAM).guest().asSlice(0x6000, PAGE).toArray(ValueLayout.JAVA_BYTE));
            } finally {
                run.close();
            }
        }
    }

    @Test
    @Rejects(Rule.COLO_MESSAGE)
    void coloMessageValueOutOfRange() {
        for (int v : new int[]{7, 0x42, -1}) {
            RejectionRig.says(coloRejects(Rule.COLO_MESSAGE, cat(new StreamBytes().be32(v).toBytes(), validCheckpoint()), 1 << 20),
                    String.format("invalid COLO message 0x%08x", v));
        }
        // in place of VMSTATE_SIZE, after a valid live state
        byte[] cp = validCheckpoint();
        byte[] bad = cp.clone();
        ByteBuffer.wrap(bad).putInt(8 + liveState().size(), 99);
        RejectionRig.says(coloRejects(Rule.COLO_MESSAGE, cat(cp, bad), 1 << 20), "invalid COLO message 0x00000063");
    }

    @Test
    @Rejects(Rule.COLO_UNEXPECTED)
    void coloMessageOutOfOrder() {
        RejectionRig.says(coloRejects(Rule.COLO_UNEXPECTED, msg(new StreamBytes(), ColoMessage.VMSTATE_SEND).toBytes(), 1 << 20),
                "COLO message VMSTATE_SEND while waiting for CHECKPOINT_REQUEST");
        RejectionRig.says(coloRejects(Rule.COLO_UNEXPECTED, msg(msg(new StreamBytes(), ColoMessage.CHECKPOINT_REQUEST),
                ColoMessage.CHECKPOINT_READY).toBytes(), 1 << 20), "COLO message CHECKPOINT_READY while waiting for VMSTATE_SEND");
        byte[] cp = validCheckpoint();
        ByteBuffer.wrap(cp).putInt(8 + liveState().size(), ColoMessage.CHECKPOINT_REQUEST.value());
        RejectionRig.says(coloRejects(Rule.COLO_UNEXPECTED, cp, 1 << 20),
                "COLO message CHECKPOINT_REQUEST while waiting for VMSTATE_SIZE");
    }

    @Test
    @Rejects(Rule.COLO_VMSTATE_LIMIT)
    void vmstateSizeOverTheBound() {
        for (long size : new long[]{1L << 62, -1L, 0x80000000L, (1 << 20) + 1}) {
            RejectionRig.says(coloRejects(Rule.COLO_VMSTATE_LIMIT, checkpoint(liveState(), size, BLOB), 1 << 20),
                    "VMSTATE_SIZE " + Long.toUnsignedString(size) + " bytes, the bound is 1048576");
        }
    }

    @Test
    @Rejects(Rule.SECTION_ORDER)
    void liveStateHoldsOnlyRam() {
        RejectionRig.says(coloRejects(Rule.SECTION_ORDER, checkpoint(new StreamBytes().command(Command.PING.id, new byte[4]).eof(),
                BLOB.length, BLOB), 1 << 20), "command inside a COLO checkpoint");
        RejectionRig.says(coloRejects(Rule.SECTION_ORDER, checkpoint(new StreamBytes().full(0, "timer", 0, 2).bytes(new byte[24])
                .footer(0).eof(), BLOB.length, BLOB), 1 << 20), "device section 'timer' inside a checkpoint's live state");
        RejectionRig.says(coloRejects(Rule.SECTION_ORDER, checkpoint(new StreamBytes().ramSetup(false).eof(), BLOB.length, BLOB),
                1 << 20), "a second RAM START section");
    }

    @Test
    @Rejects(Rule.RAM_OFFSET)
    void liveStateRamIsCheckedLikePrecopyRam() {
        RejectionRig.says(coloRejects(Rule.RAM_OFFSET, checkpoint(new StreamBytes().part(RAM_ID).zero(null, StreamBytes.RAM_LEN)
                .eos().footer(RAM_ID).eof(), BLOB.length, BLOB), 1 << 20), "illegal RAM offset 0x100000");
    }

    // ------------------------------------------------------------------ over TCP: failover keeps the last commit

    static Vertx vertx;
    static final int COLO_START = 54030;      // 7.2 colo_plain_0.bin: end of precopy (after the vmdesc)

    @BeforeAll
    static void start() {
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(4));
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
    }

    /** A COLO replica that received the real 7.2 COLO primary's precopy and sent CHECKPOINT_READY. */
    record Primary(Replica replica, io.vertx.core.Future<MigrationResult> outcome, Socket main, InputStream replies)
            implements AutoCloseable {
        static Primary start(long heartbeatMs, long maxBlob) throws Exception {
            return start(config(heartbeatMs, maxBlob), vertx);
        }

        static ReplicaConfig config(long heartbeatMs, long maxBlob) throws java.io.IOException {
            return ReplicaConfig.defaults("colo", "127.0.0.1", Replay.freePort())
                    .withFlushMode(FlushMode.LEGACY)
                    .withColo(ReplicaConfig.ColoOptions.on(1000).withHeartbeat(heartbeatMs).withMaxBlob(maxBlob));
        }

        /** As above for a replica of {@code cfg} (a plain COLO one, see {@link #config}) on {@code vertx}. */
        static Primary start(ReplicaConfig cfg, Vertx vertx) throws Exception {
            return start(deployed(cfg, vertx));
        }

        static Replica deployed(ReplicaConfig cfg, Vertx vertx) {
            Replica r = new Replica(cfg);
            r.deploy(vertx, 2).await();
            return r;
        }

        /** The next migration into {@code r}: the 7.2 COLO primary's precopy up to CHECKPOINT_READY. */
        static Primary start(Replica r) throws Exception {
            ReplicaConfig cfg = r.config();
            var outcome = r.nextMigration();
            Socket s = new Socket("127.0.0.1", cfg.port());
            s.setTcpNoDelay(true);
            s.setSoTimeout(10_000);
            s.getOutputStream().write(Captures.load("qemu-7.2/colo_plain_0.bin"), 0, COLO_START);
            Primary p = new Primary(r, outcome, s, s.getInputStream());
            p.expect(ColoMessage.CHECKPOINT_READY);
            return p;
        }

        void send(byte[] b) throws Exception {
            main.getOutputStream().write(b);
            main.getOutputStream().flush();
        }

        void expect(ColoMessage m) throws Exception {
            byte[] b = replies.readNBytes(4);
            assertEquals(4, b.length, "reply " + m);
            assertEquals(m.value(), ByteBuffer.wrap(b).getInt(), "reply " + m);
        }

        /** A full checkpoint with the primary's side of the exchange; it commits epoch + 1. */
        void checkpointCommitted() throws Exception {
            byte[] cp = validCheckpoint();
            send(java.util.Arrays.copyOf(cp, 4));
            expect(ColoMessage.CHECKPOINT_REPLY);
            send(java.util.Arrays.copyOfRange(cp, 4, cp.length));
            expect(ColoMessage.VMSTATE_RECEIVED);
            expect(ColoMessage.VMSTATE_LOADED);
        }

        /** The replica failed over: the outcome is a result (not a failure) naming the rule. */
        MigrationResult failedOver(Rule rule, long epoch) throws Exception {
            MigrationResult res = outcome.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
            assertNotNull(res.colo(), "a COLO replica fails over");
            assertEquals(epoch, res.colo().epoch());
            assertTrue(res.colo().failoverReason().startsWith(rule.id() + ": "), res.colo().failoverReason());
            return res;
        }

        @Override
        public void close() throws Exception {
            main.close();
        }
    }

    /** The image of the 7.2 COLO capture (the loader's blob at 0x1000), plus what our checkpoints wrote. */
    static byte[] image(boolean withCheckpoint) {
        byte[] ram = Captures.all().get(0).expectedRam();
        if (withCheckpoint) {
            System.arraycopy(pattern(0x6000), 0, ram, 0x6000, PAGE);
        }
        return ram;
    }

    static void keeps(MigrationResult res, byte[] image) {
        assertArrayEquals(image, res.memory().block(RAM).guest().toArray(ValueLayout.JAVA_BYTE), "the last committed image");
        res.memory().close();
    }

    @Test
    @Rejects({Rule.COLO_MESSAGE, Rule.COLO_UNEXPECTED, Rule.COLO_VMSTATE_LIMIT})
    void coloDefectsFailOverKeepingTheLastCommittedImage() throws Exception {
        List<Object[]> cases = new ArrayList<>();
        cases.add(new Object[]{Rule.COLO_MESSAGE, new StreamBytes().be32(0x42).toBytes(), "invalid COLO message 0x00000042"});
        cases.add(new Object[]{Rule.COLO_UNEXPECTED, msg(new StreamBytes(), ColoMessage.VMSTATE_SIZE).toBytes(),
            "COLO message VMSTATE_SIZE while waiting for CHECKPOINT_REQUEST"});
        cases.add(new Object[]{Rule.COLO_VMSTATE_LIMIT, checkpoint(liveState(), 1L << 62, BLOB), "VMSTATE_SIZE 4611686018427387904"});
        cases.add(new Object[]{Rule.RAM_OFFSET, checkpoint(new StreamBytes().part(RAM_ID).zero(RAM, 0xfffffffffffff000L).eos()
                .footer(RAM_ID).eof(), BLOB.length, BLOB), "illegal RAM offset 0xfffffffffffff000"});
        for (boolean afterACheckpoint : new boolean[]{false, true}) {
            for (Object[] c : cases) {
                try (Primary p = Primary.start(10_000, 1 << 20)) {
                    if (afterACheckpoint) {
                        p.checkpointCommitted();
                    }
                    p.send((byte[]) c[1]);
                    MigrationResult res = p.failedOver((Rule) c[0], afterACheckpoint ? 1 : 0);
                    assertTrue(res.colo().failoverReason().contains((String) c[2]), res.colo().failoverReason());
                    keeps(res, image(afterACheckpoint));
                }
            }
        }
    }

    @Test
    @Rejects(Rule.COLO_HEARTBEAT)
    void noCheckpointRequestWithinTheHeartbeat() throws Exception {
        try (Primary p = Primary.start(300, 1 << 20)) {
            p.checkpointCommitted();
            long t0 = System.nanoTime();
            MigrationResult res = p.failedOver(Rule.COLO_HEARTBEAT, 1);
            assertTrue(res.colo().failoverReason().contains("no checkpoint request"), res.colo().failoverReason());
            assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(5));
            keeps(res, image(true));
        }
    }
}
