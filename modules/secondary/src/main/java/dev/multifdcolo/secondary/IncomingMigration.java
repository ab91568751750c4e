package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.MemoryLimitException;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.net.Connection;
import dev.multifdcolo.secondary.stream.MainStreamDecoder;
import dev.multifdcolo.secondary.stream.MultifdChannelDecoder;
import dev.multifdcolo.secondary.stream.RamSink;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.ReturnPath;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.buffer.Buffer;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * One incoming migration on one replica port: the main channel plus {@code multifd-channels}
 * channels, tied together by the port and the hello's channel id. Owns the decoders, the sync
 * barrier, the guest memory, and the outcome.
 *
 * <p>Channels live on different event loops. Page data never crosses threads: each channel's
 * decoder copies its pages from its socket buffers into the image on its own loop. Cross-channel
 * state (binding, the barrier, failure) is small and guarded.
 */
public final class IncomingMigration implements RamSink {
    private static final Logger LOG = Logger.getLogger(IncomingMigration.class.getName());

    private final ReplicaConfig cfg;
    private final Promise<MigrationResult> outcome = Promise.promise();
    private final SyncBarrier barrier;
    private final MigrationStats stats;
    private final Connection[] channels;
    private final List<Connection> connections = new ArrayList<>();
    private final AtomicBoolean finished = new AtomicBoolean();
    private volatile GuestMemory memory;
    private Connection main;
    private MainStreamDecoder mainDecoder;
    private volatile boolean returnPath;
    private volatile String machine;
    private final Runnable onEnd;

    IncomingMigration(ReplicaConfig cfg, Runnable onEnd) {
        this.cfg = cfg;
        this.onEnd = onEnd;
        this.barrier = new SyncBarrier(cfg.multifdChannels());
        this.stats = new MigrationStats(cfg.multifdChannels());
        this.channels = new Connection[cfg.multifdChannels()];
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

    // ------------------------------------------------------------------ channel attachment

    /** A connection whose first bytes were "QEVM". */
    public void attachMain(Connection c) {
        synchronized (this) {
            if (main != null) {
                c.reject(new ProtocolException(Rule.CHANNEL_DUPLICATE_MAIN,
                        "a second main channel from " + c.remote() + " while one is active"));
                return;
            }
            main = c;
            connections.add(c);
        }
        MainStreamDecoder.Options o = new MainStreamDecoder.Options(cfg.multifdChannels(), cfg.flushMode(),
                cfg.maxDeviceStateBytes(), cfg.maxVmdescBytes(), cfg.expectedMachine(), cfg.uuid());
        mainDecoder = new MainStreamDecoder(o, this, new MainListener());
        c.start(new Connection.Decoder() {
            @Override
            public dev.multifdcolo.secondary.stream.Progress feed(ByteBuffer in) {
                return mainDecoder.feed(in);
            }

            @Override
            public void onClose() {
                mainDecoder.onClose();
            }
        });
    }

    /** A connection whose first bytes were the multifd magic; its hello binds the channel id. */
    public void attachMultifd(Connection c) {
        if (cfg.multifdChannels() == 0) {
            ProtocolException e = new ProtocolException(Rule.MULTIFD_NOT_ENABLED,
                    "multifd channel from " + c.remote() + " but multifd-channels is 0 for replica " + cfg.name());
            c.reject(e);
            fail(e);
            return;
        }
        synchronized (this) {
            connections.add(c);
        }
        MultifdChannelDecoder d = new MultifdChannelDecoder(cfg.multifdChannels(), cfg.uuid(), cfg.compression(), this,
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
            public dev.multifdcolo.secondary.stream.Progress feed(ByteBuffer in) {
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

    private synchronized void bind(int id, Connection c) {
        ProtocolException.check(channels[id] == null, Rule.HELLO_DUPLICATE_ID,
                "received id %d already setup", id);
        channels[id] = c;
        c.channelId(id);
    }

    /** Bytes read on a channel (accounting). */
    public void countBytes(int channel, long n) {
        stats.addBytes(Math.max(channel, -1), n);
    }

    // ------------------------------------------------------------------ RamSink (plain receive)

    @Override
    public RamBlock block(String name) {
        GuestMemory m = memory;
        return m == null ? null : m.block(name);
    }

    @Override
    public MemorySegment pageTarget(RamBlock block) {
        return block.guest();
    }

    @Override
    public void zeroPages(RamBlock block, long[] offsets, int from, int count) {
        MemorySegment g = block.guest();
        for (int i = from; i < from + count; i++) {
            g.asSlice(offsets[i], dev.multifdcolo.wire.Wire.PAGE_SIZE).fill((byte) 0);
        }
    }

    @Override
    public void normalPagesWritten(RamBlock block, long[] offsets, int from, int count) {
        // plain receive: the bytes already are in the guest image
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
                        "the source sent ENABLE_COLO but replica %s is not configured for COLO", cfg.name());
                default -> { }
            }
        }

        @Override
        public void onMemSize(List<BlockSpec> blocks) {
            try {
                memory = GuestMemory.allocate(blocks, cfg.maxRamBytes(), cfg.backing());
            } catch (MemoryLimitException e) {
                throw new ProtocolException(Rule.MEM_SIZE_LIMIT, e.getMessage());
            }
            LOG.fine(() -> cfg.name() + ": RAM " + blocks);
        }

        @Override
        public boolean onBarrier() {
            Future<Void> all = barrier.await();
            if (all.succeeded()) {
                barrier.releaseAll();
                return false;
            }
            all.onComplete(ar -> main.runOnLoop(() -> {
                if (ar.failed()) {
                    fail(ar.cause());
                    return;
                }
                barrier.releaseAll();
                mainDecoder.resume();
                main.resumeDecoding();
            }));
            return true;
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
        public void onPrecopyEnd(byte[] deviceState, String vmdesc) {
            int unpaired = barrier.unpaired();
            ProtocolException.check(unpaired == 0, Rule.SYNC_PROTOCOL,
                    "%d multifd channel(s) sent a SYNC the main stream never paired: the source uses legacy sync;"
                            + " set flush-mode legacy or auto", unpaired);
            complete(deviceState, vmdesc);
        }

        @Override
        public void onLiveStateEnd() {
        }
    }

    private void complete(byte[] deviceState, String vmdesc) {
        if (!finished.compareAndSet(false, true)) {
            return;
        }
        if (returnPath) {
            // Without SHUT an 11.1 source with return-path never completes (QEMU-11.1-NOTES §0).
            main.write(ReturnPath.shut(false));
        }
        LOG.info(() -> cfg.name() + ": migration complete, machine " + machine + ", " + stats);
        closeAll(false);
        outcome.complete(new MigrationResult(cfg.name(), machine, memory, deviceState, vmdesc, stats, returnPath));
        onEnd.run();
    }

    /** Ends the session with {@code cause}; closes every channel. Idempotent. */
    public void fail(Throwable cause) {
        if (!finished.compareAndSet(false, true)) {
            return;
        }
        LOG.log(Level.WARNING, cfg.name() + ": incoming migration rejected: " + cause.getMessage(),
                cause instanceof ProtocolException ? null : cause);
        barrier.fail(cause instanceof RuntimeException r ? r : new RuntimeException(cause));
        if (returnPath && main != null) {
            main.write(ReturnPath.shut(true));
        }
        closeAll(true);
        GuestMemory m = memory;
        memory = null;
        if (m != null) {
            // no one else holds it: decoders only reach it through this session, which is over
            main.runOnLoop(m::close);
        }
        outcome.fail(new MigrationFailedException(cfg.name(), cause));
        onEnd.run();
    }

    /** A connection closed; a close before completion is fatal unless the decoder says it ended cleanly. */
    public void connectionClosed(Connection c) {
        if (finished.get()) {
            return;
        }
        if (c == main) {
            if (!mainDecoder.done()) {
                fail(new ProtocolException(Rule.CHANNEL_CLOSED, "main channel closed before the migration finished"));
            }
        }
    }

    private void closeAll(boolean now) {
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

    static Buffer buffer(ByteBuffer b) {
        byte[] a = new byte[b.remaining()];
        b.get(a);
        return Buffer.buffer(a);
    }
}
