package dev.multifdcolo.primary;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.wire.ColoMessage;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.encode.StreamWriter;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * A QEMU-compatible COLO primary ("primary emulator"): precopy, then checkpoints of the pages a
 * seeded {@link Workload} dirtied, exactly as a QEMU primary frames them (PROTOCOL.md §9.3/§9.4,
 * QEMU-11.1-NOTES §3-§6):
 *
 * <ul>
 *   <li>{@link Framing#LEGACY} (QEMU 7.2): COMMAND ENABLE_COLO right after the configuration, no
 *       return path; a checkpoint's RAM END section ends with SYNC packets + EOS (multifd).</li>
 *   <li>{@link Framing#MODERN} (QEMU 11.1): OPEN_RETURN_PATH + PING(1), no ENABLE_COLO; after the
 *       precopy the secondary answers PONG, SHUT(0), then CHECKPOINT_READY; the RAM END section
 *       ends with MULTIFD_FLUSH + EOS (multifd).</li>
 * </ul>
 *
 * One checkpoint: CHECKPOINT_REQUEST → wait REPLY → VMSTATE_SEND, RAM END section with the dirty
 * pages (plain: on the main channel; multifd: in packets, plus the sync), EOF → VMSTATE_SIZE +
 * be64 + the device blob (FULL timer, FULL globalstate, EOF: 183 bytes for {@code -M none}) →
 * wait RECEIVED → wait LOADED. Every socket has TCP_NODELAY.
 *
 * <pre>
 *   try (ColoPrimary p = ColoPrimary.connect(cfg, memory, Workloads.load(seed))) {
 *       p.start();                                   // precopy, then READY
 *       List&lt;ColoCheckpoint&gt; cps = p.run(100, Duration.ofMillis(600), null);
 *   }
 * </pre>
 *
 * The digest of each checkpoint is {@link GuestMemory#fastDigest()} of the emulator's own memory,
 * the function the secondary uses for its commits, so the two compare directly per epoch.
 * For fault tests, {@link #checkpoint(Fault)} cuts (RST) or stalls the connections at a chosen
 * point and {@link #lastFault()} says what a correct secondary may have kept. Methods are called
 * from one thread, except {@link #kill()}.
 */
public final class ColoPrimary implements AutoCloseable {

    /**
     * @param replyTimeout        how long to wait for each message of the secondary
     * @param digests             compute the memory digest at each checkpoint
     * @param precopyDirtyRounds  workload intervals during precopy: each is sent in a further
     *                            PART round, the last one in the completion's END section
     */
    public record Options(Duration replyTimeout, boolean digests, int precopyDirtyRounds) {
        public Options {
            Objects.requireNonNull(replyTimeout, "replyTimeout");
            if (precopyDirtyRounds < 0) {
                throw new IllegalArgumentException("precopyDirtyRounds must be >= 0");
            }
        }

        public static Options defaults() {
            return new Options(Duration.ofSeconds(30), true, 1);
        }

        public Options withReplyTimeout(Duration d) {
            return new Options(d, digests, precopyDirtyRounds);
        }

        public Options withDigests(boolean on) {
            return new Options(replyTimeout, on, precopyDirtyRounds);
        }

        public Options withPrecopyDirtyRounds(int n) {
            return new Options(replyTimeout, digests, n);
        }
    }

    private final MigrationSender sender;
    private final GuestMemory memory;
    private final Workload workload;
    private final Options opts;
    private final byte[] blob;
    private final List<String> digests = new ArrayList<>();
    private DirtyPages pending = DirtyPages.none();
    private boolean guestRan;
    private long epoch = -1;
    private InputStream in;
    private boolean started;
    private volatile boolean broken;
    private volatile FaultReport.Stage stage = FaultReport.Stage.IDLE;
    private volatile FaultReport.Stage firedStage;
    private volatile long firedBytes;
    private volatile boolean firedComplete;
    /** The live state (with every multifd SYNC) of the current checkpoint was written. */
    private volatile boolean liveSent;
    private volatile FaultReport lastFault;

    private ColoPrimary(MigrationSender sender, GuestMemory memory, Workload workload, Options opts, byte[] blob) {
        this.sender = sender;
        this.memory = memory;
        this.workload = workload;
        this.opts = opts;
        this.blob = blob;
    }

    /**
     * Connects like QEMU's COLO primary of the configured framing: the return path is on for
     * {@link Framing#MODERN} and off for {@link Framing#LEGACY}, which sends ENABLE_COLO instead.
     */
    public static ColoPrimary connect(SenderConfig cfg, GuestMemory memory, Workload workload) throws IOException {
        return connect(cfg, memory, workload, Options.defaults());
    }

    public static ColoPrimary connect(SenderConfig cfg, GuestMemory memory, Workload workload, Options opts)
            throws IOException {
        Objects.requireNonNull(workload, "workload");
        boolean modern = cfg.framing() == Framing.MODERN;
        SenderConfig colo = cfg.toBuilder().returnPath(modern).enableColo(!modern).build();
        StreamWriter w = StreamWriter.buffered(512);
        colo.devices().writeDeviceSections(w);
        w.eof();
        byte[] blob = w.toByteArray();
        MigrationSender s = MigrationSender.connect(colo, memory);
        return new ColoPrimary(s, memory, workload, opts, blob);
    }

    // ------------------------------------------------------------------ phase A: precopy

    /**
     * Precopy (setup, every page, {@code precopyDirtyRounds} workload rounds, completion with
     * devices and vmdesc), then waits for the secondary to enter COLO: SHUT(0) on the return path
     * (modern) and CHECKPOINT_READY. Returns the digest of the image both sides now hold (epoch 0).
     */
    public String start() throws IOException {
        if (started) {
            throw new IllegalStateException("start() was called already");
        }
        started = true;
        try {
            sender.setup();
            sender.iterate(DirtyPages.all(memory));
            DirtyPages last = DirtyPages.none();
            for (int r = 0; r < opts.precopyDirtyRounds(); r++) {
                DirtyPages d = DirtyPages.none();
                workload.step(memory, d);
                if (r < opts.precopyDirtyRounds() - 1) {
                    sender.iterate(d);
                } else {
                    last = d;
                }
            }
            sender.complete(last);
            sender.phase("entering COLO");
            sender.awaitReturnPathShut();
            sender.mainSocket().socket().setSoTimeout((int) Math.min(Integer.MAX_VALUE, opts.replyTimeout().toMillis()));
            in = sender.mainSocket().socket().getInputStream();
            expect(ColoMessage.CHECKPOINT_READY);
        } catch (IOException | RuntimeException e) {
            broken = true;
            throw e instanceof MigrationException me ? me : sender.failed(e);
        }
        epoch = 0;
        String d = digest();
        digests.add(d);
        return d;
    }

    // ------------------------------------------------------------------ phase B: checkpoints

    /** One interval of guest activity: the workload writes memory; the next checkpoint sends it. */
    public void runGuest() {
        ensureUsable();
        workload.step(memory, pending);
        guestRan = true;
    }

    /** The pages the next checkpoint will send (a test may write memory itself and mark them here). */
    public DirtyPages pendingPages() {
        return pending;
    }

    /** A rough size of the next checkpoint on the wire (all channels), for picking fault offsets. */
    public long estimatedCheckpointBytes() {
        long pages = pending.count();
        int channels = sender.multifdChannels();
        long packets = channels == 0 ? 0 : pages / 128 + 1 + channels;
        return 4 + 4 + 5 + pages * (4096 + 8) + packets * 1400 + 21 + 1 + 12 + blob.length;
    }

    /** A checkpoint of what the guest wrote since the last one (runs the workload once if it did not run). */
    public ColoCheckpoint checkpoint() throws IOException {
        return checkpoint(null);
    }

    /**
     * A checkpoint with an injected fault (null: none). A fault that cuts or stalls the session
     * ends it: this throws (for a stall, only once {@link #kill()} released it), and
     * {@link #lastFault()} describes it. A fault on a single multifd channel lets the others and
     * the main channel go on until the secondary reacts.
     */
    public ColoCheckpoint checkpoint(Fault fault) throws IOException {
        ensureUsable();
        if (fault != null && fault.channel() >= 0 && fault.channel() >= sender.multifdChannels()) {
            throw new IllegalArgumentException("no multifd channel " + fault.channel());
        }
        if (!guestRan) {
            runGuest();
        }
        DirtyPages dirty = pending;
        pending = DirtyPages.none();
        guestRan = false;
        long k = epoch + 1;
        long estimate = estimatedBytesOf(dirty);
        Tripwire trip = sender.tripwire();
        SendStats before = sender.stats();
        StreamWriter out = sender.stream();
        firedStage = null;
        liveSent = false;
        stage = FaultReport.Stage.IDLE;
        try {
            sender.phase("checkpoint " + k);
            if (fault != null) {
                arm(trip, fault, fault.where() == Fault.Where.AT_BYTE ? fault.bytes() : Long.MAX_VALUE);
                at(fault, Fault.Where.BEFORE_REQUEST, trip);
            }
            stage = FaultReport.Stage.REQUEST;
            long t0 = System.nanoTime();
            sender.onMain(() -> out.be32(ColoMessage.CHECKPOINT_REQUEST.value()).flush());
            at(fault, Fault.Where.AFTER_REQUEST, trip);
            expect(ColoMessage.CHECKPOINT_REPLY);

            stage = FaultReport.Stage.LIVE;
            if (fault != null && fault.where() == Fault.Where.LIVE_RAM) {
                // the estimate covers all channels; one multifd channel carries about its share
                long of = fault.channel() >= 0 ? estimate / sender.multifdChannels() : estimate;
                arm(trip, fault, (long) (fault.fraction() * of));
            }
            long tSend = System.nanoTime();
            // flushed on its own, as QEMU's colo_send_message does: the secondary admits the
            // checkpoint's multifd packets only after VMSTATE_SEND, so holding it back in our
            // buffer while the channels fill their sockets would deadlock a large checkpoint
            sender.onMain(() -> out.be32(ColoMessage.VMSTATE_SEND.value()).flush());
            sender.sendLiveState(dirty);
            long transfer = System.nanoTime() - tSend;
            liveSent = true;
            if (fault != null && fault.where() == Fault.Where.LIVE_RAM) {
                fire(fault, trip);   // the live state was shorter than the estimate: at its end
            }
            at(fault, Fault.Where.BEFORE_SIZE, trip);

            stage = FaultReport.Stage.BLOB;
            if (fault != null && fault.where() == Fault.Where.IN_BLOB) {
                arm(trip, fault, 12 + (long) (fault.fraction() * blob.length));
            }
            sender.onMain(() -> out.be32(ColoMessage.VMSTATE_SIZE.value()).be64(blob.length).bytes(blob).flush());
            stage = FaultReport.Stage.SENT;
            if (fault != null && (fault.where() == Fault.Where.AT_BYTE || fault.where() == Fault.Where.IN_BLOB)) {
                fire(fault, trip);   // the checkpoint was shorter than the offset: after its last byte
            }
            at(fault, Fault.Where.AFTER_BLOB, trip);
            expect(ColoMessage.VMSTATE_RECEIVED);

            stage = FaultReport.Stage.RECEIVED;
            at(fault, Fault.Where.DURING_FLUSH, trip);
            expect(ColoMessage.VMSTATE_LOADED);
            long pause = System.nanoTime() - t0;
            stage = FaultReport.Stage.LOADED;
            if (fault != null) {
                trip.disarm();
                if (trip.fired()) {
                    // a single multifd channel was cut and yet the secondary completed: report it
                    lastFault = report(k, fault, null);
                }
            }
            epoch = k;
            SendStats after = sender.stats();
            String d = digest();
            digests.add(d);
            return new ColoCheckpoint(k, dirty.count(), after.zeroPages() - before.zeroPages(),
                    after.totalBytes() - before.totalBytes(), transfer, pause, d);
        } catch (IOException | RuntimeException e) {
            broken = true;
            IOException io = e instanceof MigrationException me ? me
                    : e instanceof IOException x ? sender.failed(x) : null;
            sender.close();
            if (fault != null) {
                lastFault = report(k, fault, io != null ? io.getMessage() : String.valueOf(e));
                trip.disarm();
            }
            if (io != null) {
                throw io;
            }
            throw (RuntimeException) e;
        }
    }

    private FaultReport report(long k, Fault fault, String error) {
        return new FaultReport(k, fault, firedStage, firedBytes, firedComplete, error, digest(),
                digests.get((int) (k - 1)));
    }

    /**
     * Runs {@code n} checkpoints, one every {@code interval} (QEMU's x-checkpoint-delay, counted
     * from the end of the previous checkpoint; the workload writes at the start of the interval).
     */
    public List<ColoCheckpoint> run(int n, Duration interval, Consumer<ColoCheckpoint> each) throws IOException {
        List<ColoCheckpoint> all = new ArrayList<>(n);
        long intervalNanos = interval.toNanos();
        for (int i = 0; i < n; i++) {
            long t0 = System.nanoTime();
            runGuest();
            long wait = t0 + intervalNanos - System.nanoTime();
            if (wait > 0) {
                try {
                    Thread.sleep(Duration.ofNanos(wait));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new MigrationException("interrupted after " + i + " checkpoints");
                }
            }
            ColoCheckpoint c = checkpoint();
            all.add(c);
            if (each != null) {
                each.accept(c);
            }
        }
        return all;
    }

    // ------------------------------------------------------------------ fault plumbing

    private void arm(Tripwire trip, Fault fault, long limit) {
        int target = fault.channel() == Fault.ALL_CHANNELS ? Tripwire.ALL
                : fault.channel() == Fault.MAIN ? Tripwire.MAIN : fault.channel();
        trip.arm(target, limit, fault.stall(), channel -> {
            FaultReport.Stage now = stage;
            firedStage = now;
            firedBytes = trip.counted();
            // a lone multifd channel is done with this checkpoint once the live state (its SYNC
            // included) was written; the main channel carries on with the blob
            firedComplete = now.compareTo(FaultReport.Stage.SENT) >= 0 || (fault.channel() >= 0 && liveSent);
            if (fault.stall()) {
                return;
            }
            switch (fault.channel()) {
                case Fault.ALL_CHANNELS -> sender.resetAll();
                case Fault.MAIN -> sender.resetMain();
                default -> sender.resetMultifd(fault.channel());
            }
        });
    }

    /** Fires the fault if it is the one for {@code where}. */
    private void at(Fault fault, Fault.Where where, Tripwire trip) throws IOException {
        if (fault != null && fault.where() == where) {
            fire(fault, trip);
        }
    }

    /**
     * Fires now (if not yet fired). A cut of the whole session or of the main channel, and every
     * stall, stop this thread; a cut of one multifd channel lets it go on.
     */
    private void fire(Fault fault, Tripwire trip) throws IOException {
        if (fault.channel() >= 0 && !fault.stall()) {
            trip.trigger(Tripwire.MAIN);
            return;
        }
        trip.fireNow(Tripwire.MAIN);
    }

    /** What the last faulted checkpoint did (null before any). */
    public FaultReport lastFault() {
        return lastFault;
    }

    // ------------------------------------------------------------------ messages

    private void expect(ColoMessage want) throws IOException {
        byte[] b = new byte[4];
        int got = 0;
        try {
            while (got < 4) {
                int n = in.read(b, got, 4 - got);
                if (n < 0) {
                    throw new EOFException("the secondary closed the connection while we waited for " + want);
                }
                got += n;
            }
        } catch (SocketTimeoutException e) {
            throw new MigrationException("no " + want + " from the secondary within " + opts.replyTimeout().toMillis()
                    + " ms", e);
        } catch (IOException e) {
            throw sender.failed(e);
        }
        int v = ((b[0] & 0xff) << 24) | ((b[1] & 0xff) << 16) | ((b[2] & 0xff) << 8) | (b[3] & 0xff);
        if (v != want.value()) {
            String name = v >= 0 && v < ColoMessage.values().length ? ColoMessage.values()[v].name()
                    : "0x" + Integer.toHexString(v);
            throw new MigrationException("unexpected COLO message " + name + " while waiting for " + want);
        }
    }

    // ------------------------------------------------------------------ state

    private String digest() {
        return opts.digests() ? memory.fastDigest() : null;
    }

    private long estimatedBytesOf(DirtyPages d) {
        DirtyPages saved = pending;
        pending = d;
        try {
            return estimatedCheckpointBytes();
        } finally {
            pending = saved;
        }
    }

    private void ensureUsable() {
        if (!started || epoch < 0) {
            throw new IllegalStateException("start() first");
        }
        if (broken) {
            throw new IllegalStateException("the COLO session has ended");
        }
    }

    /** Last checkpoint the secondary confirmed (VMSTATE_LOADED); 0 = precopy, -1 before COLO. */
    public long epoch() {
        return epoch;
    }

    /**
     * The primary's digest at {@code epoch}: 0 = precopy image, k = after checkpoint k's writes
     * (also for a checkpoint that failed, see {@link FaultReport#digestOf}).
     */
    public String digest(long epoch) {
        return digests.get((int) epoch);
    }

    public GuestMemory memory() {
        return memory;
    }

    public Workload workload() {
        return workload;
    }

    /** The device-state blob every checkpoint sends. */
    public byte[] deviceState() {
        return blob.clone();
    }

    /** Sender counters (bytes, pages, packets, syncs) over the whole session. */
    public SendStats stats() {
        return sender.stats();
    }

    public SenderConfig config() {
        return sender.config();
    }

    /** True once a checkpoint failed or the session was killed/closed. */
    public boolean ended() {
        return broken;
    }

    /** Abrupt end: RST on every connection (a crashed primary), releases a stalled thread. Any thread. */
    public void kill() {
        broken = true;
        sender.tripwire().releaseStall();
        sender.tripwire().disarm();
        sender.resetAll();
        sender.close();
    }

    /** Orderly end: closes every connection (the secondary fails over, reason "closed"). */
    @Override
    public void close() {
        broken = true;
        sender.tripwire().releaseStall();
        sender.close();
    }
}
