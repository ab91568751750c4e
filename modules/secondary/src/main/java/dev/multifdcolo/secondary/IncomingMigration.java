package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.CheckpointJournal;
import dev.multifdcolo.memory.ColoFlush;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.MemoryLimitException;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.secondary.colo.ColoChannel;
import dev.multifdcolo.secondary.colo.MemoryJob;
import dev.multifdcolo.secondary.colo.WorkerPool;
import dev.multifdcolo.secondary.colo.PageRouter;
import dev.multifdcolo.secondary.net.Connection;
import dev.multifdcolo.secondary.stream.MainStreamDecoder;
import dev.multifdcolo.secondary.stream.MultifdChannelDecoder;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.wire.ColoMessage;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.ReturnPath;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.eventbus.Message;

import java.lang.foreign.MemorySegment;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * One incoming migration on one replica port: the main channel plus {@code multifd-channels}
 * channels, tied together by the port and the hello's channel id. Owns the decoders, the sync
 * barrier, the guest memory, and — for a COLO replica — the cache, the checkpoints and failover.
 *
 * <p>Channels live on different event loops. Page data never crosses threads on the hot path:
 * each channel's decoder copies its pages from its socket buffers into the image (or the COLO
 * cache) on its own loop and records the dirty bitmap there, lock-free. Memcpy work of COLO
 * (keeping the guest image equal to the cache during precopy, the checkpoint flush) goes to
 * worker verticles over the event bus.
 *
 * <p>COLO invariant: nothing of checkpoint <i>k</i> reaches the guest image before checkpoint
 * <i>k</i> was received in full (RAM and device state); a failover at any point keeps the image of
 * the last committed checkpoint.
 */
public final class IncomingMigration {
    private static final Logger LOG = Logger.getLogger(IncomingMigration.class.getName());

    /** Lifecycle as shown in status. */
    public enum Phase { PRECOPY, ENTERING_COLO, COLO, COMPLETED, FAILED, FAILED_OVER }

    /** How long a closed main channel waits for multifd channels that have not connected yet. */
    static final long MISSING_CHANNEL_GRACE_MS = 5_000;

    private final Replica owner;
    private final ReplicaConfig cfg;
    private final Vertx vertx;
    private final Promise<MigrationResult> outcome = Promise.promise();
    private final SyncBarrier barrier;
    private final MigrationStats stats;
    private final Connection[] channels;
    private final List<Connection> connections = new ArrayList<>();
    private final AtomicBoolean finished = new AtomicBoolean();
    private final Runnable onEnd;
    private final List<Consumer<Checkpoint>> commitListeners = new CopyOnWriteArrayList<>();
    private final PageRouter router = new PageRouter();
    private volatile GuestMemory memory;
    private volatile Phase phase = Phase.PRECOPY;
    private Connection main;
    private MainStreamDecoder mainDecoder;
    private volatile boolean returnPath;
    private volatile String machine;
    private String vmdesc;
    // COLO
    private final Outstanding flushes = new Outstanding();
    private ColoChannel colo;
    private volatile long epoch = -1;
    private volatile byte[] committedBlob;
    private volatile Checkpoint lastCheckpoint;
    private volatile String failoverReason;
    private long heartbeatTimer = -1;
    private volatile long lastActivity = System.nanoTime();
    private long requestNanos;
    private long sendNanos;
    private long transferNanos;
    private volatile boolean flushing;
    /** loaded-before-flush: VMSTATE_LOADED of the checkpoint being flushed was sent already, at {@link #loadedNanos}. */
    private volatile boolean loadedEarly;
    private volatile long loadedNanos;
    private volatile String pendingFailover;
    private volatile boolean liveState;
    // issue 8, crash consistency: the redo/commit journal of a file-backed COLO replica (else null)
    private volatile CheckpointJournal journal;
    private final List<Connection> gated = new ArrayList<>();
    /** Multifd channels holding a packet that came before the RAMBlock list. */
    private final List<Connection> ramWaiters = new ArrayList<>();
    private boolean ramKnown;

    IncomingMigration(Replica owner, Vertx vertx, Runnable onEnd) {
        this.owner = owner;
        this.cfg = owner.config();
        this.vertx = vertx;
        this.onEnd = onEnd;
        this.barrier = new SyncBarrier(cfg.multifdChannels());
        this.stats = new MigrationStats(cfg.multifdChannels());
        this.channels = new Connection[cfg.multifdChannels()];
        armGuards();
    }

    /** The live part of the configuration (heartbeat, flush workers, guards): read at each use. */
    private ReplicaConfig live() {
        return owner.config();
    }

    // ------------------------------------------------------------------ guards (issue 7)

    private final long createdNanos = System.nanoTime();
    private long guardTimer = -1;
    private volatile long windowStartNanos = System.nanoTime();
    private volatile long windowStartBytes;
    /** COLO: when the first byte of the checkpoint in progress arrived (0 = between checkpoints). */
    private volatile long checkpointStartNanos;
    private int multifdAttached;

    /**
     * One periodic check enforces the guards of {@link ReplicaConfig.Guards}: every channel set up
     * within the setup timeout; in precopy a minimum byte rate per stall window (our own flushes
     * excluded); in COLO a checkpoint that started must reach its end within the checkpoint timeout.
     */
    private void armGuards() {
        guardTimer = vertx.setPeriodic(GUARD_TICK_MS, id -> {
            if (finished.get()) {
                vertx.cancelTimer(id);
                return;
            }
            ReplicaConfig.Guards g = live().guards();
            long now = System.nanoTime();
            String missing = missingChannels();
            if (missing != null && (now - createdNanos) / 1_000_000 > g.setupTimeoutMs()) {
                fail(new ProtocolException(Rule.TIMEOUT, "migration not set up within " + g.setupTimeoutMs()
                        + " ms (channel-setup-timeout-ms): " + missing));
                return;
            }
            switch (phase) {
                case PRECOPY -> checkRate(g, now);
                case COLO -> {
                    long start = checkpointStartNanos;
                    long ms = (now - start) / 1_000_000;
                    if (start != 0 && !flushing && g.checkpointTimeoutMs() > 0 && ms > g.checkpointTimeoutMs()) {
                        failover(new ProtocolException(Rule.TIMEOUT, "checkpoint " + (epoch + 1) + " not received within "
                                + g.checkpointTimeoutMs() + " ms of its first byte (checkpoint-timeout-ms); "
                                + stats.bytes.sum() + " bytes so far").getMessage());
                    }
                }
                default -> { }
            }
        });
    }

    static final long GUARD_TICK_MS = 100;

    private void checkRate(ReplicaConfig.Guards g, long now) {
        if (g.stallTimeoutMs() == 0 || flushes.busy()) {
            // our own work (a precopy copy at a barrier) is not the source's slowness
            windowStartNanos = now;
            windowStartBytes = stats.bytes.sum();
            return;
        }
        long ms = (now - windowStartNanos) / 1_000_000;
        if (ms < g.stallTimeoutMs()) {
            return;
        }
        long got = stats.bytes.sum() - windowStartBytes;
        long need = g.minRate() * ms / 1000;
        if (got < Math.max(1, need)) {
            fail(new ProtocolException(Rule.TIMEOUT, String.format("the source sent %d byte(s) in the last %d ms,"
                    + " below the minimum of %d bytes/s (stall-timeout-ms, min-rate)", got, ms, g.minRate())));
            return;
        }
        windowStartNanos = now;
        windowStartBytes = stats.bytes.sum();
    }

    /** What the migration still lacks to be set up, or null when main and every channel are bound. */
    private synchronized String missingChannels() {
        List<Integer> unbound = new ArrayList<>();
        for (int i = 0; i < channels.length; i++) {
            if (channels[i] == null) {
                unbound.add(i);
            }
        }
        if (main != null && unbound.isEmpty()) {
            return null;
        }
        return (main == null ? "no main channel" : "main channel present") + ", multifd channel(s) "
                + (unbound.isEmpty() ? "all bound" : unbound + " not bound") + " of " + channels.length;
    }

    public Future<MigrationResult> outcome() {
        return outcome.future();
    }

    public MigrationStats stats() {
        return stats;
    }

    public ReplicaConfig config() {
        return cfg;
    }

    public Phase phase() {
        return phase;
    }

    public PageRouter.Mode mode() {
        return router.mode();
    }

    /**
     * The image being received (null before the RAMBlock list). In COLO state its guest images
     * only change at commits; read it between them (e.g. from an {@link #onCommit} listener).
     */
    public GuestMemory memory() {
        return memory;
    }

    /** Last committed checkpoint epoch (0 = precopy image), -1 before COLO. */
    public long epoch() {
        return epoch;
    }

    public Checkpoint lastCheckpoint() {
        return lastCheckpoint;
    }

    public String failoverReason() {
        return failoverReason;
    }

    private final List<String> loops = new ArrayList<>();

    /** The threads (event loops) the session's channels were attached on: main first, then multifd in arrival order. */
    public synchronized List<String> channelThreads() {
        return List.copyOf(loops);
    }

    /** Observer of every COLO commit (metrics, tests). */
    public void onCommit(Consumer<Checkpoint> c) {
        commitListeners.add(c);
    }

    // ------------------------------------------------------------------ channel attachment

    private boolean mainClaimed;

    private void enlist(Connection c) {
        if (!connections.contains(c)) {
            connections.add(c);
        }
    }

    /**
     * TLS (classification by order, see {@code Connection.tls} and {@code Replica.tlsHandshakeEnded}):
     * the first connection placed in this session is the main channel, every later one a multifd
     * channel. It is closed with the session from now on.
     *
     * @return true = main, false = multifd, null = this session has ended (ask the replica again)
     */
    public synchronized boolean mainClaimed() {
        return mainClaimed;
    }

    public synchronized Boolean claimByOrder(Connection c) {
        if (finished.get()) {
            return null;
        }
        enlist(c);
        boolean first = !mainClaimed;
        mainClaimed = true;
        return first;
    }

    /** A connection whose first bytes were "QEVM". */
    public void attachMain(Connection c) {
        synchronized (this) {
            if (main != null) {
                c.reject(new ProtocolException(Rule.CHANNEL_DUPLICATE_MAIN,
                        "a second main channel from " + c.remote() + " while one is active"));
                return;
            }
            main = c;
            enlist(c);
            loops.add(Thread.currentThread().getName());
        }
        c.mainChannel(true);
        MainStreamDecoder.Options o = new MainStreamDecoder.Options(cfg.multifdChannels(), cfg.flushMode(),
                cfg.maxDeviceStateBytes(), cfg.maxVmdescBytes(), cfg.expectedMachine(), cfg.uuid());
        mainDecoder = new MainStreamDecoder(o, router, new MainListener());
        c.start(new Connection.Decoder() {
            @Override
            public Progress feed(ByteBuffer in) {
                return feedMain(in);
            }

            @Override
            public void onClose() {
                if (phase == Phase.PRECOPY) {
                    mainDecoder.onClose();
                }
            }
        });
    }

    private Progress feedMain(ByteBuffer in) {
        switch (phase) {
            case PRECOPY -> {
                Progress p = mainDecoder.feed(in);
                if (p == Progress.DONE) {
                    // non-COLO: the session completed in onPrecopyEnd; COLO: entering the checkpoint loop
                    return phase == Phase.ENTERING_COLO ? Progress.PAUSED : Progress.DONE;
                }
                return p;
            }
            case COLO -> {
                return colo.feed(in);
            }
            default -> {
                return Progress.PAUSED;
            }
        }
    }

    /** A connection whose first bytes were the multifd magic; its hello binds the channel id. */
    public void attachMultifd(Connection c) {
        if (cfg.multifdChannels() == 0) {
            ProtocolException e = new ProtocolException(Rule.MULTIFD_NOT_ENABLED,
                    "multifd channel from " + c.remote() + " but multifd-channels is 0 for replica " + cfg.name());
            c.closeQuietly();
            fail(e);
            return;
        }
        synchronized (this) {
            if (multifdAttached >= cfg.multifdChannels()) {
                // QEMU would take it for a postcopy channel; we have no use for it, and the
                // migration it connected to keeps its channels
                c.reject(new ProtocolException(Rule.CHANNEL_EXTRA, "connection " + c.remote() + " beyond the main channel and "
                        + cfg.multifdChannels() + " multifd channel(s) of the migration in progress"));
                return;
            }
            multifdAttached++;
            enlist(c);
            loops.add(Thread.currentThread().getName());
        }
        MultifdChannelDecoder d = new MultifdChannelDecoder(cfg.multifdChannels(), cfg.uuid(), cfg.compression(), router,
                new MultifdChannelDecoder.Listener() {
                    @Override
                    public void onHello(int id) {
                        bind(id, c);
                    }

                    @Override
                    public void onSync(int id) {
                        stats.syncs.increment();
                        barrier.arrive(id, c::resumeFromOtherThread);
                    }

                    @Override
                    public boolean admit(int id) {
                        return admitCheckpointRam(c);
                    }

                    @Override
                    public boolean waitForBlockList(int id) {
                        synchronized (ramWaiters) {
                            if (ramKnown) {
                                return false;
                            }
                            ramWaiters.add(c);
                            return true;
                        }
                    }

                    @Override
                    public void onPacket(int id, int normal, int zero, long payload) {
                        stats.packets.increment();
                        if (normal > 0) {
                            stats.normalPages.add(normal);
                        }
                        if (zero > 0) {
                            stats.zeroPages.add(zero);
                        }
                    }
                });
        c.start(new Connection.Decoder() {
            @Override
            public Progress feed(ByteBuffer in) {
                return d.feed(in);
            }

            @Override
            public void onClose() {
                try {
                    d.onClose();
                } finally {
                    d.close();
                    int id = d.channelId();
                    if (id >= 0) {
                        barrier.channelClosed(id);
                    }
                }
            }
        });
    }

    /**
     * COLO state: checkpoint RAM is only applied between VMSTATE_SEND and the live state's EOF.
     * A channel whose next checkpoint's packet overtook the main channel's VMSTATE_SEND waits,
     * so nothing of checkpoint k+1 can be flushed with checkpoint k.
     */
    private boolean admitCheckpointRam(Connection c) {
        if (router.mode() != PageRouter.Mode.COLO_STATE || liveState) {
            return true;
        }
        synchronized (gated) {
            if (liveState) {
                return true;
            }
            gated.add(c);
            return false;
        }
    }

    private void openCheckpointRam(boolean open) {
        List<Connection> release;
        synchronized (gated) {
            liveState = open;
            if (!open) {
                return;
            }
            release = new ArrayList<>(gated);
            gated.clear();
        }
        release.forEach(Connection::resumeFromOtherThread);
    }

    private synchronized void bind(int id, Connection c) {
        ProtocolException.check(channels[id] == null, Rule.HELLO_DUPLICATE_ID,
                "received id %d already setup", id);
        channels[id] = c;
        c.channelId(id);
    }

    /** Bytes read on a channel (accounting, and the COLO heartbeat). */
    public void countBytes(int channel, long n) {
        stats.addBytes(Math.max(channel, -1), n);
        long now = System.nanoTime();
        lastActivity = now;
        if (phase == Phase.COLO && checkpointStartNanos == 0 && !flushing) {
            checkpointStartNanos = now;
        }
    }

    // ------------------------------------------------------------------ main stream events

    private final class MainListener implements MainStreamDecoder.Listener {
        @Override
        public void onConfiguration(String m) {
            machine = m;
        }

        @Override
        public void onCommand(Command command, ByteBuffer data) {
            switch (command) {
                case OPEN_RETURN_PATH -> returnPath = true;
                case PING -> {
                    int value = data.getInt(data.position());
                    if (returnPath) {
                        main.write(ReturnPath.pong(value));
                    }
                }
                case ENABLE_COLO -> ProtocolException.check(cfg.colo(), Rule.COLO_NOT_ENABLED,
                        "the source sent ENABLE_COLO but replica %s is not configured for COLO (colo: true)", cfg.name());
                default -> { }
            }
        }

        @Override
        public void onMemSize(List<BlockSpec> blocks) {
            checkRamLimit(blocks);
            allocate(blocks);
            ramReady();
        }

        /**
         * A file-backed replica creates (truncates) its image files and, with COLO, first resets the
         * checkpoint journal with a directory fsync: blocking I/O, done on a worker while the main
         * channel waits (and multifd packets that come meanwhile wait for the block list).
         * Anonymous memory is only mapped (pages come on first touch): that stays on the loop.
         */
        @Override
        public boolean onMemSizeMayPause(List<BlockSpec> blocks) {
            checkRamLimit(blocks);
            if (!(cfg.backing() instanceof Backing.Files)) {
                allocate(blocks);
                ramReady();
                return false;
            }
            vertx.executeBlocking(() -> {
                allocate(blocks);
                return null;
            }, false).onComplete(ar -> main.runOnLoop(() -> {
                if (finished.get()) {
                    // the session ended meanwhile (a timeout, a closed channel): nothing will use the files
                    GuestMemory m = memory;
                    memory = null;
                    router.memory(null);
                    if (m != null) {
                        m.close();
                    }
                    return;
                }
                if (ar.failed()) {
                    fail(ar.cause());
                    return;
                }
                ramReady();
                mainDecoder.resume();
                main.resumeDecoding();
            }));
            return true;
        }

        private void checkRamLimit(List<BlockSpec> blocks) {
            long need = blocks.stream().mapToLong(BlockSpec::length).sum() * (cfg.colo() ? 2 : 1);
            if (cfg.colo() && need > cfg.maxRamBytes()) {
                throw new ProtocolException(Rule.MEM_SIZE_LIMIT, "RAM plus COLO cache of " + need
                        + " bytes exceeds the limit of " + cfg.maxRamBytes() + " bytes");
            }
        }

        private void allocate(List<BlockSpec> blocks) {
            if (cfg.colo() && cfg.backing() instanceof Backing.Files files) {
                // issue 8: a new session replaces the old checkpoint; invalidate it before the files are truncated
                try {
                    CheckpointJournal.invalidate(files.directory());
                } catch (IOException e) {
                    throw new UncheckedIOException("cannot reset the checkpoint journal in " + files.directory(), e);
                }
            }
            try {
                memory = GuestMemory.allocate(blocks, cfg.maxRamBytes(), cfg.backing());
            } catch (MemoryLimitException e) {
                throw new ProtocolException(Rule.MEM_SIZE_LIMIT, e.getMessage());
            }
            if (cfg.colo()) {
                memory.enableColo(cfg.backing());
                if (cfg.backing() instanceof Backing.Files files) {
                    journal = CheckpointJournal.of(files.directory(), memory);   // issue 8
                }
                router.mode(PageRouter.Mode.COLO_PRECOPY);
            }
            router.memory(memory);
            LOG.fine(() -> cfg.name() + ": RAM " + blocks);
        }

        /** The block list is applied: channels whose packets came earlier go on. */
        private void ramReady() {
            List<Connection> release;
            synchronized (ramWaiters) {
                ramKnown = true;
                release = new ArrayList<>(ramWaiters);
                ramWaiters.clear();
            }
            release.forEach(Connection::resumeFromOtherThread);
        }

        @Override
        public boolean onBarrier() {
            boolean colo = router.mode() == PageRouter.Mode.COLO_STATE;
            if (colo) {
                openCheckpointRam(true);       // the channels' pages before this SYNC belong to this checkpoint
            }
            // COLO precopy: once every channel is paused at its SYNC nothing writes the cache, so
            // this round's pages are copied cache → guest by the workers before anyone goes on.
            Future<Void> all = barrier.await().compose(v -> router.mode() == PageRouter.Mode.COLO_PRECOPY
                    ? flushToGuest().mapEmpty() : Future.succeededFuture());
            if (all.succeeded()) {
                release(colo);
                return false;
            }
            all.onComplete(ar -> main.runOnLoop(() -> {
                if (ar.failed()) {
                    fail(ar.cause());
                    return;
                }
                release(colo);
                mainDecoder.resume();
                main.resumeDecoding();
            }));
            return true;
        }

        /**
         * In COLO state the gate stays open when the channels go on: a barrier there is always inside
         * a checkpoint's live state (VMSTATE_SEND .. its EOF), and QEMU 11.1 also syncs in the middle
         * of a checkpoint (when its dirty-page search wraps around RAM), so what follows a SYNC may
         * still be this checkpoint's pages. Closing here held those pages while the primary waited
         * to send them: a deadlock once they exceeded the socket buffers (16 k-page checkpoints,
         * multifd 4, found by bench/run-real-colo.sh). The gate closes at the live state's EOF
         * ({@code onLiveStateEnd}); the next checkpoint's RAM cannot come earlier, since the primary
         * sends it only after our VMSTATE_LOADED.
         */
        private void release(boolean colo) {
            barrier.releaseAll();
        }

        @Override
        public void onRamSectionEnd(int sectionType) {
        }

        @Override
        public void onMainPages(int normal, int zero) {
            stats.mainPages.add(normal + zero);
            stats.normalPages.add(normal);
            stats.zeroPages.add(zero);
        }

        @Override
        public void onPrecopyEnd(byte[] deviceState, String desc) {
            vmdesc = desc;
            ProtocolException.check(memory != null, Rule.SECTION_ORDER, "the stream ended without a RAM section");
            if (cfg.colo()) {
                // From here on every page is checkpoint data: cache + bitmap only. Nothing was
                // recorded during precopy, so the bitmaps are clean (we run no guest that could
                // dirty the image, §9.8 step 1 is empty).
                phase = Phase.ENTERING_COLO;
                committedBlob = deviceState;
                // From here on every page is checkpoint data (cache + bitmap, held at the gate
                // until VMSTATE_SEND). The last precopy pages (after the last barrier, or all of
                // them without multifd) are still marked: copy them to the guest, then READY.
                router.mode(PageRouter.Mode.COLO_STATE);
                // issue 8: the precopy image is durable as epoch 0 before CHECKPOINT_READY
                flushToGuest().compose(st -> journaled(j -> j.commit(0, deviceState)))
                        .compose(v -> digest())
                        .onComplete(ar -> main.runOnLoop(() -> enterColo(ar.cause(), ar.result())));
            } else {
                // a channel still waiting at a SYNC the stream never paired lost its later packets
                int unpaired = barrier.unpaired();
                ProtocolException.check(unpaired == 0, Rule.SYNC_PROTOCOL,
                        "%d multifd channel(s) sent a SYNC the main stream never paired: the source uses legacy"
                                + " sync; set flush-mode legacy or auto", unpaired);
                complete(deviceState);
            }
        }

        @Override
        public void onLiveStateEnd() {
        }
    }

    private void complete(byte[] deviceState) {
        if (!finished.compareAndSet(false, true)) {
            return;
        }
        phase = Phase.COMPLETED;
        if (returnPath) {
            // Without SHUT an 11.1 source with return-path never completes (QEMU-11.1-NOTES §0).
            main.write(ReturnPath.shut(false));
        }
        LOG.info(() -> cfg.name() + ": migration complete, machine " + machine + ", " + stats);
        closeAll();
        outcome.complete(new MigrationResult(cfg.name(), machine, memory, deviceState, vmdesc, stats, returnPath, null));
        onEnd.run();
    }

    // ------------------------------------------------------------------ COLO (§9.3 - §9.10)

    /** Precopy done and cache == guest: the image is consistent; start the checkpoint loop. */
    private void enterColo(Throwable flushFailure, String digest) {
        if (finished.get()) {
            return;
        }
        if (flushFailure != null) {
            fail(flushFailure);
            return;
        }
        if (returnPath) {
            // 11.1: SHUT after the vmdesc and before CHECKPOINT_READY, else the primary fails (§6 of the notes)
            main.write(ReturnPath.shut(false));
        }
        epoch = 0;
        colo = new ColoChannel(mainDecoder, cfg.coloOptions().maxBlob(), new ColoListener());
        phase = Phase.COLO;
        lastCheckpoint = new Checkpoint(0, 0, 0, 0, 0, 0, committedBlob.length, digest);
        LOG.info(() -> cfg.name() + ": COLO state entered, precopy image committed as epoch 0"
                + (digest == null ? "" : ", digest " + digest));
        commitListeners.forEach(l -> l.accept(lastCheckpoint));
        armHeartbeat();
        sendColo(ColoMessage.CHECKPOINT_READY);
        main.resumeDecoding();
    }

    private void sendColo(ColoMessage m) {
        ByteBuffer b = ByteBuffer.allocate(4).putInt(m.value()).flip();
        main.write(b);
    }

    /**
     * The heartbeat: the primary must keep bytes coming (a CHECKPOINT_REQUEST at least every
     * interval, and a checkpoint in progress keeps streaming). No byte on any channel for
     * {@code heartbeat-timeout-ms} — outside our own flush — is a failover. Re-armed by every read,
     * so a large checkpoint that takes longer than the heartbeat is not mistaken for a dead primary.
     */
    private void armHeartbeat() {
        lastActivity = System.nanoTime();
        // the period follows the heartbeat configured at entry; a live change applies from the next tick
        heartbeatTimer = vertx.setPeriodic(Math.max(10, Math.min(cfg.coloOptions().heartbeatMs() / 8, 250)), id -> main.runOnLoop(() -> {
            if (finished.get() || flushing || phase != Phase.COLO) {
                return;
            }
            long ms = live().coloOptions().heartbeatMs();
            long idle = (System.nanoTime() - lastActivity) / 1_000_000;
            if (idle > ms) {
                failover(new ProtocolException(Rule.COLO_HEARTBEAT, "no bytes from the primary for " + idle
                        + " ms (heartbeat " + ms + " ms)" + (colo.idle() ? ", no checkpoint request" : " mid-checkpoint"))
                        .getMessage());
            }
        }));
    }

    private final class ColoListener implements ColoChannel.Listener {
        @Override
        public void onRequest() {
            requestNanos = System.nanoTime();
            sendColo(ColoMessage.CHECKPOINT_REPLY);
        }

        @Override
        public void onVmstateSend() {
            sendNanos = System.nanoTime();
            openCheckpointRam(true);
        }

        @Override
        public void onLiveStateEnd() {
            transferNanos = System.nanoTime() - sendNanos;
            openCheckpointRam(false);      // plain (no multifd) COLO has no barrier to close it
        }

        @Override
        public void onDeviceState(byte[] blob) {
            // The whole checkpoint is here (§9.4): acknowledge, then flush cache → guest.
            sendColo(ColoMessage.VMSTATE_RECEIVED);
            flush(blob);
        }
    }

    /** Checkpoint flush: every page recorded since the last one, cache → guest; then commit. */
    private void flush(byte[] blob) {
        flushing = true;
        long t0 = System.nanoTime();
        long k = epoch + 1;
        // issue 8: redo record (cache + pages to flush) durable before the first page is copied,
        // the commit durable before LOADED; no-ops without a journal
        boolean early = live().coloOptions().loadedBeforeFlush();
        journaled(j -> j.beginFlush(k, blob)).andThen(ar -> {
            if (ar.succeeded() && early && !finished.get() && pendingFailover == null) {
                // the checkpoint is complete (and, file-backed, redoable): the primary may go on
                loadedEarly = true;
                loadedNanos = System.nanoTime();
                sendColo(ColoMessage.VMSTATE_LOADED);
            }
        }).compose(v -> flushToGuest())
                .compose(st -> journaled(j -> j.commit(k, blob)).map(st))
                .compose(st -> digest().map(d -> new Flushed(st, d)))
                .onComplete(ar -> main.runOnLoop(() -> {
            flushing = false;
            if (ar.failed()) {
                fail(new IllegalStateException("flush failed: " + ar.cause().getMessage(), ar.cause()));
                return;
            }
            lastActivity = System.nanoTime();     // our flush time is not the primary's silence
            commit(blob, ar.result().stats().pages(), ar.result().stats().runs(), System.nanoTime() - t0,
                    ar.result().digest());
        }));
    }

    private record Flushed(ColoFlush.Stats stats, String digest) {
    }

    /**
     * With {@code digest-on-commit}: the image's CRC32C, computed on a worker (a pass over the whole
     * image, ~0.1 s per GiB: never on an event loop); else null.
     */
    private Future<String> digest() {
        if (!live().coloOptions().digestOnCommit()) {
            return Future.succeededFuture();
        }
        GuestMemory m = memory;
        return vertx.executeBlocking(m::fastDigest, false);
    }

    /**
     * Splits every block's bitmap over the flush worker verticles (event-bus requests carrying a
     * block and a word range, never page bytes); each copies its runs of dirty pages cache → guest
     * and clears the bits. Only called while no channel writes (at a barrier, at the end of
     * precopy, after a checkpoint was received).
     */
    private Future<ColoFlush.Stats> flushToGuest() {
        WorkerPool pool = owner.acquireWorkers();
        if (pool == null) {
            return Future.failedFuture(new IllegalStateException("replica " + cfg.name() + " has no flush workers deployed"));
        }
        Future<ColoFlush.Stats> f;
        try {
            f = flushToGuest(pool);
        } catch (RuntimeException e) {
            pool.release();
            throw e;
        }
        return f.andThen(ar -> pool.release());
    }

    private Future<ColoFlush.Stats> flushToGuest(WorkerPool pool) {
        int workers = pool.size();
        List<Future<Message<ColoFlush.Stats>>> parts = new ArrayList<>();
        for (RamBlock b : memory.blocks()) {
            if (b.bitmap().dirtyPages() == 0) {
                continue;
            }
            int words = b.bitmap().wordCount();
            int per = Math.max(64, (words + workers - 1) / workers);
            for (int from = 0; from < words; from += per) {
                parts.add(vertx.eventBus().request(pool.address(),
                        new MemoryJob.Flush(b, from, Math.min(words, from + per))));
            }
        }
        if (parts.isEmpty()) {
            return Future.succeededFuture(new ColoFlush.Stats(0, 0));
        }
        flushes.begin();
        return Future.all(parts).map(cf -> {
            long pages = 0;
            long runs = 0;
            for (Future<Message<ColoFlush.Stats>> f : parts) {
                pages += f.result().body().pages();
                runs += f.result().body().runs();
            }
            return new ColoFlush.Stats(pages, runs);
        }).andThen(ar -> flushes.end());
    }

    /** Issue 8: one journal step on a worker (msync/fsync never on the event loop); nothing without a journal. */
    private Future<Void> journaled(JournalStep step) {
        CheckpointJournal j = journal;
        if (j == null) {
            return Future.succeededFuture();
        }
        return vertx.executeBlocking(() -> {
            step.run(j);
            return null;
        });
    }

    private interface JournalStep {
        void run(CheckpointJournal j) throws IOException;
    }

    private void commit(byte[] blob, long pages, long runs, long flushNanos, String digest) {
        committedBlob = blob;
        epoch++;
        checkpointStartNanos = 0;
        boolean early = loadedEarly;
        loadedEarly = false;
        long pause = (early ? loadedNanos : System.nanoTime()) - requestNanos;
        Checkpoint cp = new Checkpoint(epoch, pages, runs, transferNanos, flushNanos, pause, blob.length, digest);
        lastCheckpoint = cp;
        LOG.info(() -> String.format("%s: checkpoint %d committed: %d dirty pages flushed in %.2f ms (%d runs),"
                        + " RAM %.2f ms, pause %.2f ms%s", cfg.name(), cp.epoch(), pages, flushNanos / 1e6, runs,
                cp.transferNanos() / 1e6, pause / 1e6, digest == null ? "" : ", digest " + digest));
        commitListeners.forEach(l -> l.accept(cp));
        String deferred = pendingFailover;
        if (deferred != null) {
            // a failover during the flush waits for it, and then no LOADED is sent (§9.9)
            finishFailover(deferred);
            return;
        }
        if (!early) {
            sendColo(ColoMessage.VMSTATE_LOADED);
        }
        colo.checkpointDone();
        main.resumeDecoding();
    }

    /**
     * Ends COLO for this replica, keeping the last committed checkpoint: the primary is gone, the
     * stream broke a rule, the heartbeat expired, or an operator asked. Safe from any thread.
     */
    public void failover(String reason) {
        Connection m = main;
        if (m == null) {
            return;
        }
        m.runOnLoop(() -> {
            if (finished.get()) {
                return;
            }
            if (phase != Phase.COLO) {
                fail(new IllegalStateException("failover before COLO state: " + reason));
                return;
            }
            if (flushing) {
                pendingFailover = reason;
                return;
            }
            finishFailover(reason);
        });
    }

    private void finishFailover(String reason) {
        if (!finished.compareAndSet(false, true)) {
            return;
        }
        failoverReason = reason;
        phase = Phase.FAILED_OVER;
        if (heartbeatTimer >= 0) {
            vertx.cancelTimer(heartbeatTimer);
        }
        closeAll();
        LOG.warning(() -> cfg.name() + ": failed over at epoch " + epoch + " (" + reason + "); the image is checkpoint "
                + epoch);
        outcome.complete(new MigrationResult(cfg.name(), machine, memory, committedBlob, vmdesc, stats, returnPath,
                new MigrationResult.Colo(epoch, reason, lastCheckpoint)));
        onEnd.run();
    }

    // ------------------------------------------------------------------ failure

    /**
     * Ends the session with {@code cause}. In COLO state this is a failover that keeps the last
     * committed checkpoint; before it, the incoming migration fails and its memory is released.
     */
    public void fail(Throwable cause) {
        if (phase == Phase.COLO && !finished.get()) {
            failover(cause.getMessage());
            return;
        }
        if (!finished.compareAndSet(false, true)) {
            return;
        }
        phase = Phase.FAILED;
        LOG.log(Level.WARNING, cfg.name() + ": incoming migration rejected: " + cause.getMessage(),
                cause instanceof ProtocolException ? null : cause);
        barrier.fail(cause instanceof RuntimeException r ? r : new RuntimeException(cause));
        if (returnPath && main != null) {
            main.write(ReturnPath.shut(true));
        }
        closeAll();
        GuestMemory m = memory;
        memory = null;
        router.memory(null);
        if (m != null) {
            // wait until no worker copies into it any more, then release it
            flushes.idle().onComplete(ar -> m.close());
        }
        outcome.fail(new MigrationFailedException(cfg.name(), cause));
        onEnd.run();
    }

    /**
     * The peer closed a connection whose decoder is paused (at a barrier, or holding a packet).
     *
     * @return true to keep its queued bytes and handle the close after the release; false when the
     *         release can never come (the session is failed here)
     */
    public boolean closedWhilePaused(Connection c) {
        if (finished.get()) {
            return false;
        }
        if (c == main && phase == Phase.PRECOPY) {
            // The source sent everything and closed; its channels may still be on their way
            // (accepted, hello not read yet). If some are still missing after a grace period,
            // they will never come: the barrier can never be released.
            vertx.setTimer(MISSING_CHANNEL_GRACE_MS, id -> {
                List<Integer> missing = new ArrayList<>();
                synchronized (this) {
                    for (int i = 0; i < channels.length; i++) {
                        if (channels[i] == null) {
                            missing.add(i);
                        }
                    }
                }
                if (!missing.isEmpty()) {
                    fail(new ProtocolException(Rule.CHANNEL_CLOSED, "main channel closed while waiting at a sync for"
                            + " multifd channel(s) " + missing + " that never connected"));
                }
            });
            return true;
        }
        if (phase == Phase.COLO) {
            connectionClosed(c);
            return false;
        }
        return true;
    }

    /** A connection closed; before completion that ends the session (COLO: failover). */
    public void connectionClosed(Connection c) {
        if (finished.get()) {
            return;
        }
        boolean noMain;
        synchronized (this) {
            noMain = main == null;
        }
        if (noMain) {
            // a channel of a migration whose main channel never came (or was rejected): this
            // session can never complete; end it so the next migration starts clean
            fail(new ProtocolException(Rule.CHANNEL_CLOSED, "multifd channel " + c.channelId()
                    + " closed before the main channel connected"));
            return;
        }
        if (phase == Phase.COLO) {
            failover(c == main ? "the primary closed the main channel" : "the primary closed multifd channel " + c.channelId());
            return;
        }
        if (c == main && phase == Phase.PRECOPY && !mainDecoder.done()) {
            fail(new ProtocolException(Rule.CHANNEL_CLOSED, "main channel closed before the migration finished"));
        }
    }

    private void closeAll() {
        List<Connection> all;
        synchronized (this) {
            all = new ArrayList<>(connections);
        }
        for (Connection c : all) {
            c.closeAfterWrites();
        }
    }

    public boolean finished() {
        return finished.get();
    }

    /** Counts in-flight worker jobs; {@link #idle()} completes when none is left. */
    private static final class Outstanding {
        private long count;
        private final List<Promise<Void>> waiters = new ArrayList<>();

        synchronized void begin() {
            count++;
        }

        void end() {
            List<Promise<Void>> done = null;
            synchronized (this) {
                if (--count == 0 && !waiters.isEmpty()) {
                    done = new ArrayList<>(waiters);
                    waiters.clear();
                }
            }
            if (done != null) {
                done.forEach(Promise::tryComplete);
            }
        }

        synchronized boolean busy() {
            return count > 0;
        }

        synchronized Future<Void> idle() {
            if (count == 0) {
                return Future.succeededFuture();
            }
            Promise<Void> p = Promise.promise();
            waiters.add(p);
            return p.future();
        }
    }
}
