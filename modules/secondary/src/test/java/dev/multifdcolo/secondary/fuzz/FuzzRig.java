package dev.multifdcolo.secondary.fuzz;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.ColoFlush;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.MemoryLimitException;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.colo.ColoChannel;
import dev.multifdcolo.secondary.colo.PageRouter;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.secondary.stream.MainStreamDecoder;
import dev.multifdcolo.secondary.stream.MultifdChannelDecoder;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * One incoming migration without a network, single-threaded, doing what {@code IncomingMigration}
 * does around the decoders: the RAMBlock list allocates memory under the RAM limit (COLO counts
 * the cache), ENABLE_COLO needs a COLO replica, the main channel pauses at each barrier while every
 * multifd channel reads up to its SYNC (a channel that runs dry first fails the barrier), pages go
 * through the real {@link PageRouter}, and a COLO replica enters COLO state after the precopy
 * (cache flushed to the guest, epoch 0), admits channel packets only between VMSTATE_SEND and the
 * live state's EOF, flushes and commits each checkpoint once its device state arrived, and fails
 * over (keeping the last committed image) on any error or when the input ends.
 *
 * <p>The rig invents no rejection of its own beyond those session rules; everything else comes from
 * the decoders. Any Throwable other than a {@link ProtocolException} escapes to the caller.
 */
final class FuzzRig {

    /** Small limits, so that a wire length that is trusted shows up as an allocation over the bound. */
    record Limits(long maxRam, long maxDeviceState, int maxVmdesc, long maxBlob) {
        long[] asBounds() {
            return new long[]{maxRam, maxDeviceState, maxVmdesc, maxBlob, maxRam / 2};
        }
    }

    static final Limits LIMITS = new Limits(32L << 20, 64 << 10, 16 << 10, 16 << 10);

    /** What one run did. {@code rule} null = no rejection. */
    static final class Outcome {
        Rule rule;
        String message;
        ProtocolException error;
        boolean completed;          // precopy: the migration completed
        int commits;                // COLO: checkpoints committed after epoch 0
        boolean enteredColo;
        String committedDigest;     // COLO: guest digest at the last commit
        String finalDigest;         // COLO: guest digest when the session ended
        long ramBytes;
    }

    private enum Phase { PRECOPY, COLO, ENDED }

    private final FuzzConfig cfg;
    private final PageRouter router = new PageRouter();
    private final Outcome out = new Outcome();
    private GuestMemory memory;
    private MainStreamDecoder md;
    private ColoChannel colo;
    private MultifdChannelDecoder[] ch;
    private Reads mainIn;
    private Reads[] chIn;
    private boolean[] bound;
    private boolean[] arrived;
    private boolean[] failed;
    private boolean barrierPending;
    private boolean precopyEnded;
    private boolean gateOpen;
    private byte[] pendingBlob;
    private Phase phase = Phase.PRECOPY;
    /** Clean runs: main / channel bytes consumed when checkpoint 1 committed. */
    private long[] atCommit1;

    /** A replica's settings for one run. */
    record FuzzConfig(int channels, Compression compression, FlushMode flush, boolean colo, Limits limits) {}

    private FuzzRig(FuzzConfig cfg) {
        this.cfg = cfg;
    }

    /**
     * Runs one migration. Returns its outcome; a ProtocolException is an outcome (rule), anything
     * else propagates.
     */
    static Outcome run(FuzzConfig cfg, Reads main, Reads[] channels) {
        FuzzRig rig = new FuzzRig(cfg);
        rig.mainIn = main;
        rig.chIn = channels;
        return rig.go();
    }

    /** The reads of every stream, prepared before a measured run. */
    static Reads[] reads(List<byte[]> channels, SplittableRandom split) {
        Reads[] r = new Reads[channels.size()];
        for (int i = 0; i < r.length; i++) {
            r[i] = new Reads(channels.get(i), split);
        }
        return r;
    }

    private Outcome go() {
        try {
            setUp();
            drive();
        } catch (ProtocolException e) {
            out.rule = e.rule();
            out.message = e.getMessage();
            out.error = e;
            if (phase == Phase.COLO) {
                failover();     // in COLO state a rejection is a failover
            }
        } finally {
            if (ch != null) {
                for (MultifdChannelDecoder d : ch) {
                    if (d != null) {
                        d.close();
                    }
                }
            }
            if (memory != null) {
                out.ramBytes = memory.totalBytes() * (cfg.colo() ? 2 : 1);
                memory.close();
            }
        }
        return out;
    }

    private void setUp() {
        int n = chIn.length;
        ch = new MultifdChannelDecoder[n];
        bound = new boolean[Math.max(1, cfg.channels())];
        arrived = new boolean[n];
        failed = new boolean[n];
        for (int i = 0; i < n; i++) {
            int idx = i;
            ch[i] = new MultifdChannelDecoder(cfg.channels(), new byte[16], cfg.compression(), router,
                    new MultifdChannelDecoder.Listener() {
                        @Override
                        public void onHello(int id) {
                            ProtocolException.check(!bound[id], Rule.HELLO_DUPLICATE_ID, "received id %d already setup", id);
                            bound[id] = true;
                        }

                        @Override
                        public void onSync(int id) {
                            arrived[idx] = true;
                        }

                        @Override
                        public boolean admit(int id) {
                            return router.mode() != PageRouter.Mode.COLO_STATE || gateOpen;
                        }

                        @Override
                        public void onPacket(int id, int normal, int zero, long payload) {
                        }
                    });
        }
        Limits l = cfg.limits();
        md = new MainStreamDecoder(new MainStreamDecoder.Options(cfg.channels(), cfg.flush(), l.maxDeviceState(),
                l.maxVmdesc(), null, new byte[16]), router, new MainStreamDecoder.Listener() {
            @Override
            public void onCommand(Command command, ByteBuffer data) {
                switch (command) {
                    case PING -> data.getInt(data.position());
                    case ENABLE_COLO -> ProtocolException.check(cfg.colo(), Rule.COLO_NOT_ENABLED,
                            "the source sent ENABLE_COLO but the replica is not configured for COLO");
                    default -> { }
                }
            }

            @Override
            public void onMemSize(List<BlockSpec> blocks) {
                long need = blocks.stream().mapToLong(BlockSpec::length).sum() * (cfg.colo() ? 2 : 1);
                if (cfg.colo() && need > l.maxRam()) {
                    throw new ProtocolException(Rule.MEM_SIZE_LIMIT, "RAM plus COLO cache of " + need + " bytes");
                }
                try {
                    memory = GuestMemory.allocate(blocks, l.maxRam(), Backing.anonymous());
                } catch (MemoryLimitException e) {
                    throw new ProtocolException(Rule.MEM_SIZE_LIMIT, e.getMessage());
                }
                if (cfg.colo()) {
                    memory.enableColo(Backing.anonymous());
                    router.mode(PageRouter.Mode.COLO_PRECOPY);
                }
                router.memory(memory);
            }

            @Override
            public boolean onBarrier() {
                barrierPending = true;
                return true;
            }

            @Override
            public void onPrecopyEnd(byte[] deviceState, String vmdesc) {
                ProtocolException.check(memory != null, Rule.SECTION_ORDER, "the stream ended without a RAM section");
                precopyEnded = true;
            }
        });
    }

    private void drive() {
        while (phase != Phase.ENDED) {
            Progress p = Progress.NEED_MORE;
            while (!mainIn.done()) {
                p = mainIn.feed(this::feedMain);
                if (p != Progress.NEED_MORE) {
                    break;
                }
            }
            if (barrierPending) {
                pair();
                continue;
            }
            if (pendingBlob != null) {
                commit();
                continue;
            }
            if (p == Progress.DONE || mainIn.done()) {
                mainEnded(p == Progress.DONE);
            } else if (p == Progress.PAUSED) {
                throw new AssertionError("main channel paused with no barrier and no checkpoint pending");
            }
        }
    }

    private Progress feedMain(ByteBuffer in) {
        while (true) {
            switch (phase) {
                case PRECOPY -> {
                    Progress p = md.feed(in);
                    if (p != Progress.DONE) {
                        return p;
                    }
                    if (!cfg.colo()) {
                        return p;
                    }
                    enterColo();
                }
                case COLO -> {
                    return colo.feed(in);
                }
                default -> {
                    return Progress.DONE;
                }
            }
        }
    }

    /** The main channel paused at a barrier: every channel reads up to its SYNC, then release. */
    private void pair() {
        boolean coloState = router.mode() == PageRouter.Mode.COLO_STATE;
        if (coloState) {
            gateOpen = true;
        }
        for (int i = 0; i < ch.length; i++) {
            int idx = i;
            do {
                feedChannel(idx);
            } while (!arrived[i] && !chIn[i].done());
            if (!arrived[i]) {
                failed[i] = true;
                ch[i].onClose();       // the decoder's verdict on where the channel ended
                throw new ProtocolException(Rule.SYNC_PROTOCOL, "multifd channel " + i + " closed before reaching the sync");
            }
        }
        if (ch.length < cfg.channels()) {
            throw new ProtocolException(Rule.SYNC_PROTOCOL, "a configured multifd channel never connected");
        }
        if (router.mode() == PageRouter.Mode.COLO_PRECOPY) {
            flushAll();
        }
        if (coloState) {
            gateOpen = false;
        }
        Arrays.fill(arrived, false);
        barrierPending = false;
        md.resume();
    }

    /** One read into channel {@code i}; a channel that threw is never fed again (its decoder is unusable). */
    private Progress feedChannel(int i) {
        try {
            return chIn[i].feed(ch[i]::feed);
        } catch (ProtocolException e) {
            failed[i] = true;
            throw e;
        }
    }

    private void enterColo() {
        router.mode(PageRouter.Mode.COLO_STATE);
        flushAll();
        out.enteredColo = true;
        out.committedDigest = memory.fastDigest();
        phase = Phase.COLO;
        colo = new ColoChannel(md, cfg.limits().maxBlob(), new ColoChannel.Listener() {
            @Override
            public void onRequest() {
            }

            @Override
            public void onVmstateSend() {
                gateOpen = true;
            }

            @Override
            public void onLiveStateEnd() {
                gateOpen = false;
            }

            @Override
            public void onDeviceState(byte[] blob) {
                pendingBlob = blob;
            }
        });
    }

    private void commit() {
        flushAll();
        pendingBlob = null;
        out.commits++;
        out.committedDigest = memory.fastDigest();
        if (out.commits == 1 && atCommit1 != null) {
            atCommit1[0] = mainIn.consumed();
            for (int i = 0; i < chIn.length; i++) {
                atCommit1[i + 1] = chIn[i].consumed();
            }
        }
        colo.checkpointDone();
    }

    private void flushAll() {
        for (RamBlock b : memory.blocks()) {
            ColoFlush.flush(b, 0, b.bitmap().wordCount());
        }
    }

    /** The main input is exhausted (or the decoder is done). */
    private void mainEnded(boolean done) {
        if (phase == Phase.PRECOPY) {
            if (!done) {
                md.onClose();           // a named error, or the precopy ends (EOF without vmdesc)
            }
            if (!precopyEnded) {
                throw new AssertionError("main channel ended without completing and without an error");
            }
            if (cfg.colo()) {
                enterColo();            // then the primary is gone: failover at epoch 0
                failover();
                return;
            }
            out.completed = true;
            phase = Phase.ENDED;
            drainChannels(true);
            return;
        }
        failover();
    }

    /**
     * Whatever the channels still hold is read too (it exercises the decoders). After a completed
     * precopy a SYNC there was never paired (the session reports sync-protocol).
     */
    private void drainChannels(boolean strict) {
        for (int i = 0; i < ch.length; i++) {
            int idx = i;
            int stuck = 0;
            if (failed[i]) {
                continue;
            }
            while (!chIn[i].done() && stuck < 2) {
                long before = chIn[i].consumed();
                Progress p = feedChannel(idx);
                if (p == Progress.PAUSED && strict && arrived[i]) {
                    throw new ProtocolException(Rule.SYNC_PROTOCOL, "channel " + i + " sent a SYNC the main stream never paired");
                }
                stuck = chIn[i].consumed() == before ? stuck + 1 : 0;
            }
            if (strict || chIn[i].done()) {
                failed[i] = true;
                ch[i].onClose();
            }
        }
    }

    private void failover() {
        if (phase == Phase.ENDED) {
            return;
        }

        phase = Phase.ENDED;
        try {
            drainChannels(false);     // late packets land in the cache at most
        } catch (ProtocolException ignored) {
            // the session is over; a broken channel after it changes nothing
        }
        out.finalDigest = memory.fastDigest();
    }

    /**
     * Clean run of a COLO capture: where checkpoint 1 ends in each stream. (The main stream is
     * read up to the end of the precopy first: a COLO primary sends nothing more until our READY.)
     */
    static Seeds.Seed coloBoundary(Seeds.Seed s) {
        FuzzRig rig = new FuzzRig(new FuzzConfig(s.channels().size(), s.compression(), s.flush(), true,
                new Limits(64L << 20, 64L << 20, 16 << 20, 64L << 20)));
        SplittableRandom whole = new SplittableRandom(0);
        Reads.reset();
        rig.mainIn = new Reads(s.main(), whole, s.precopyEnd());
        rig.chIn = new Reads[s.channels().size()];
        for (int i = 0; i < rig.chIn.length; i++) {
            rig.chIn[i] = new Reads(s.channels().get(i), whole);
        }
        rig.atCommit1 = new long[1 + rig.chIn.length];
        Outcome o = rig.go();
        if (o.commits < 1) {
            throw new IllegalStateException(s.name() + ": clean run committed no checkpoint: " + o.message);
        }
        int[] chPrefix = new int[rig.chIn.length];
        for (int i = 0; i < chPrefix.length; i++) {
            chPrefix[i] = (int) rig.atCommit1[i + 1];
        }
        return new Seeds.Seed(s.name(), s.main(), s.channels(), s.compression(), s.flush(), true, s.precopyEnd(),
                (int) rig.atCommit1[0], chPrefix, s.ramBytes());
    }
}
