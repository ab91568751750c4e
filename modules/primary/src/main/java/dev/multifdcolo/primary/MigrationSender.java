package dev.multifdcolo.primary;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.SectionType;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.encode.PacketWriter;
import dev.multifdcolo.wire.encode.StreamWriter;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;
import java.nio.channels.WritableByteChannel;
import java.time.Duration;
import java.util.BitSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.LongAdder;

/**
 * The primary side of a QEMU live migration: a long-lived session over one main channel and
 * optionally N multifd channels, sending a {@link GuestMemory} image in QEMU's wire format so that
 * a real QEMU destination (7.2 with {@link Framing#LEGACY}, 8.1+/11.1 with {@link Framing#MODERN})
 * loads it.
 *
 * <pre>
 *   try (MigrationSender s = MigrationSender.connect(cfg, memory)) {
 *       s.setup();                          // START "ram": MEM_SIZE list (+ sync)
 *       s.iterate(DirtyPages.all(memory));  // PART "ram": every page
 *       ...rewrite memory, s.iterate(dirty) // more rounds
 *       s.complete(DirtyPages.none());      // [SWITCHOVER_START] END "ram", devices, EOF, vmdesc
 *       SendStats st = s.finish();          // wait for SHUT(0) (return path), close
 *   }
 * </pre>
 *
 * Methods are called from one thread; multifd channels have their own writer threads. The RAM
 * section sender ({@link #sendRamSection}) is the piece a COLO checkpoint will reuse (a RAM END
 * section with the dirty pages, followed by EOF).
 */
public final class MigrationSender implements AutoCloseable {
    private enum State { CONNECTED, SETUP, ITERATING, COMPLETED, FINISHED, FAILED }

    private static final int MAIN_BUFFER = 256 * 1024;
    /** Check the clock for progress callbacks every this many pages. */
    private static final int PROGRESS_STRIDE = 1024;

    private final SenderConfig cfg;
    private final GuestMemory memory;
    private final SocketChannel main;
    private final StreamWriter out;
    private final MultifdPool multifd;
    private final ReturnPathReader returnPath;
    private final int ramSectionId;
    private final long startNanos;
    private final long progressIntervalNanos;
    private long lastProgress;
    private long mainNormal;
    private long mainZero;
    private int iterations;
    private String phase = "connected";
    private State state = State.CONNECTED;
    /** The multifd job being filled by the sending thread. */
    private MultifdPool.Job batch;
    /** Block names as multifd packets carry them, encoded once. */
    private final Map<RamBlock, byte[]> names = new IdentityHashMap<>();
    /** Bytes the main socket accepted (counted as written, for the stall watchdog). */
    private final LongAdder mainWritten;
    /** True while an API call is sending: only then does a lack of progress count as a stall. */
    private volatile boolean busy;
    private volatile boolean closed;
    private volatile String stallMessage;
    /** Fault injection (COLO fault tests); inert unless armed. */
    private final Tripwire trip;

    private MigrationSender(SenderConfig cfg, GuestMemory memory, SocketChannel main, StreamWriter out,
                            LongAdder mainWritten, MultifdPool multifd, ReturnPathReader returnPath, long startNanos,
                            Tripwire trip) {
        this.cfg = cfg;
        this.trip = trip;
        this.mainWritten = mainWritten;
        this.memory = memory;
        this.main = main;
        this.out = out;
        this.multifd = multifd;
        this.returnPath = returnPath;
        this.ramSectionId = cfg.devices().ramSectionId();
        this.startNanos = startNanos;
        this.progressIntervalNanos = cfg.progressInterval() == null ? Long.MAX_VALUE : cfg.progressInterval().toNanos();
        this.lastProgress = startNanos;
    }

    /**
     * Connects the main channel, writes the stream header and configuration (plus
     * OPEN_RETURN_PATH and PING(1) with the return path), then — only then, because a 7.2
     * destination classifies connections by accept order — connects the multifd channels and sends
     * their hellos.
     */
    public static MigrationSender connect(SenderConfig cfg, GuestMemory memory) throws IOException {
        if (cfg.multifd() && !PacketCompressor.available(cfg.compression())) {
            throw new MigrationException("multifd compression " + cfg.compression().qemuName() + " is not available");
        }
        if (memory.blocks().isEmpty()) {
            throw new IllegalArgumentException("guest memory has no blocks");
        }
        long t0 = System.nanoTime();
        SocketChannel main = connectSocket(cfg.address(), cfg.socketSendBuffer(), cfg.connectTimeout());
        MultifdPool pool = null;
        ReturnPathReader rp = null;
        Tripwire trip = new Tripwire();
        try {
            LongAdder written = new LongAdder();
            StreamWriter out = StreamWriter.toChannel(counting(main, written, trip), MAIN_BUFFER);
            out.header().configuration(cfg.machine());
            if (cfg.returnPath()) {
                out.openReturnPath().ping(1);
            }
            if (cfg.enableColo()) {
                out.enableColo(); // QEMU 7.2 COLO primary: right after the header (and return path)
            }
            out.flush();
            if (cfg.returnPath()) {
                rp = new ReturnPathReader(main);
                rp.start();
            }
            if (cfg.multifd()) {
                pool = MultifdPool.open(cfg, trip);
            }
            MigrationSender sender = new MigrationSender(cfg, memory, main, out, written, pool, rp, t0, trip);
            sender.startWatchdog();
            return sender;
        } catch (IOException | RuntimeException e) {
            if (pool != null) {
                pool.close();
            }
            closeQuietly(main);
            if (e instanceof IOException io && !(io instanceof MigrationException)) {
                throw new MigrationException("cannot start the migration to " + hostPort(cfg.address()) + ": "
                        + describe(io), io);
            }
            throw e;
        }
    }

    /** Opens a blocking, TCP_NODELAY socket with the given send buffer. */
    static SocketChannel connectSocket(InetSocketAddress address, int sendBuffer, Duration timeout) throws IOException {
        SocketChannel sc = SocketChannel.open();
        try {
            sc.setOption(StandardSocketOptions.TCP_NODELAY, true);
            sc.setOption(StandardSocketOptions.SO_SNDBUF, sendBuffer);
            Socket s = sc.socket();
            s.connect(address, (int) Math.min(Integer.MAX_VALUE, timeout.toMillis()));
            return sc;
        } catch (IOException e) {
            closeQuietly(sc);
            throw new MigrationException("cannot connect to " + hostPort(address) + ": " + describe(e), e);
        }
    }

    private static WritableByteChannel counting(SocketChannel ch, LongAdder counter, Tripwire trip) {
        return new WritableByteChannel() {
            private final ByteBuffer[] one = new ByteBuffer[1];

            @Override
            public int write(ByteBuffer src) throws IOException {
                int n;
                if (trip.armed() || trip.fired()) {
                    one[0] = src;
                    try {
                        n = (int) trip.write(Tripwire.MAIN, ch::write, one, 0, 1);
                    } finally {
                        one[0] = null;
                    }
                } else {
                    n = ch.write(src);
                }
                counter.add(n);
                return n;
            }

            @Override
            public boolean isOpen() {
                return ch.isOpen();
            }

            @Override
            public void close() throws IOException {
                ch.close();
            }
        };
    }

    /**
     * Watches for a destination that stopped reading while we send (blocking writes would wait
     * forever): with mismatched framing a QEMU destination parks its channel threads at a barrier
     * that never comes and simply stops reading, it reports nothing.
     */
    private void startWatchdog() {
        Duration limit = cfg.stallTimeout();
        if (limit == null || limit.isZero() || limit.isNegative()) {
            return;
        }
        long limitNanos = limit.toNanos();
        Thread.ofPlatform().name("migration-watchdog").daemon().start(() -> {
            long last = -1;
            long since = System.nanoTime();
            while (!closed) {
                try {
                    Thread.sleep(Math.min(200, Math.max(10, limit.toMillis() / 10)));
                } catch (InterruptedException e) {
                    return;
                }
                long now = System.nanoTime();
                long progress = mainWritten.sum() + (multifd == null ? 0 : multifd.bytes.sum());
                if (!busy || progress != last) {
                    last = progress;
                    since = now;
                    continue;
                }
                if (now - since >= limitNanos) {
                    stallMessage = "the destination stopped reading (nothing could be written for "
                            + limit.toMillis() / 1000.0 + " s); check that framing, multifd channels, compression "
                            + "and capabilities match it (e.g. legacy framing into a modern destination hangs)";
                    if (multifd != null) {
                        multifd.fail(new MigrationException(stallMessage));
                    }
                    closeQuietly(main);
                    return;
                }
            }
        });
    }

    // ------------------------------------------------------------------ precopy phases

    /** Sends everything: setup, one round with every page, completion, and waits for the end. */
    public SendStats migrate() throws IOException {
        setup();
        iterate(DirtyPages.all(memory));
        complete(DirtyPages.none());
        return finish();
    }

    /**
     * The RAM setup section: START "ram" with the MEM_SIZE block list, then (multifd) a sync —
     * MULTIFD_FLUSH with modern framing — and EOS.
     */
    public void setup() throws IOException {
        expect(State.CONNECTED, "setup");
        phase = "setup";
        guard(() -> {
            List<RamBlock> blocks = memory.blocks();
            String[] names = new String[blocks.size()];
            long[] lengths = new long[blocks.size()];
            for (int i = 0; i < names.length; i++) {
                names[i] = blocks.get(i).name();
                lengths[i] = blocks.get(i).length();
            }
            out.sectionStart(ramSectionId, Wire.RAM_IDSTR, 0, Wire.RAM_SECTION_VERSION);
            out.ramMemSize(names, lengths);
            endRamPayload();
        });
        state = State.SETUP;
        progress(true);
    }

    /** One precopy round: a PART "ram" section with {@code pages} (read from memory now). */
    public void iterate(DirtyPages pages) throws IOException {
        if (state != State.SETUP && state != State.ITERATING) {
            throw new IllegalStateException("iterate() needs setup() first and no complete() yet");
        }
        phase = "iteration " + (iterations + 1);
        sendRamSection(SectionType.PART, pages);
        state = State.ITERATING;
    }

    /**
     * Completion: SWITCHOVER_START (modern framing), END "ram" with {@code pages}, the device
     * sections, EOF and the vmdesc trailer.
     */
    public void complete(DirtyPages pages) throws IOException {
        if (state != State.SETUP && state != State.ITERATING) {
            throw new IllegalStateException("complete() needs setup() first");
        }
        phase = "completion";
        if (cfg.framing() == Framing.MODERN) {
            guard(out::switchoverStart);
        }
        sendRamSection(SectionType.END, pages);
        guard(() -> {
            cfg.devices().writeDeviceSections(out);
            out.eof();
            out.vmdescription(cfg.devices().vmdescJson(cfg.machine()));
            out.flush();
        });
        state = State.COMPLETED;
    }

    /**
     * Completion with caller-provided device state instead of {@link SenderConfig#devices()}'s:
     * SWITCHOVER_START (modern framing), END "ram" with {@code pages}, then {@code deviceSections}
     * verbatim — FULL sections that must already end with the EOF byte (0x00), e.g. a COLO
     * checkpoint's device-state blob — then the VMDESCRIPTION {@code vmdesc} (none when null).
     */
    public void complete(DirtyPages pages, byte[] deviceSections, byte[] vmdesc) throws IOException {
        if (deviceSections == null || deviceSections.length == 0 || deviceSections[deviceSections.length - 1] != 0) {
            throw new IllegalArgumentException("device sections must end with the EOF byte 0x00");
        }
        if (state != State.SETUP && state != State.ITERATING) {
            throw new IllegalStateException("complete() needs setup() first");
        }
        phase = "completion";
        if (cfg.framing() == Framing.MODERN) {
            guard(out::switchoverStart);
        }
        sendRamSection(SectionType.END, pages);
        guard(() -> {
            out.bytes(deviceSections);
            if (vmdesc != null) {
                out.vmdescription(vmdesc);
            }
            out.flush();
        });
        state = State.COMPLETED;
    }

    /**
     * Ends the session: lets the multifd threads drain, waits for the destination's SHUT (return
     * path; SHUT(1) or a close without SHUT is a failure) and closes every connection.
     */
    public SendStats finish() throws IOException {
        expect(State.COMPLETED, "finish");
        phase = "finish";
        try {
            if (multifd != null) {
                busy = true;
                try {
                    multifd.stop();
                } finally {
                    busy = false;
                }
            }
            if (returnPath != null) {
                int value = awaitShut();
                if (value != 0) {
                    throw new MigrationException("destination reported a failed migration (return-path SHUT "
                            + value + ")");
                }
            }
        } catch (IOException | RuntimeException e) {
            state = State.FAILED;
            IOException report = e instanceof MigrationException me && me.getMessage().startsWith("destination")
                    ? me : explain(e);
            close();
            if (report != null) {
                throw report;
            }
            throw e;
        }
        phase = "done";
        SendStats st = stats();
        close();
        state = State.FINISHED;
        if (cfg.progress() != null) {
            cfg.progress().accept(st);
        }
        return st;
    }

    private int awaitShut() throws IOException {
        try {
            return returnPath.shut().get(cfg.shutTimeout().toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new MigrationException("no return-path SHUT from the destination within " + cfg.shutTimeout().toSeconds() + " s");
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            throw c instanceof MigrationException me ? me : new MigrationException(describe(c), c);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MigrationException("interrupted while waiting for the return-path SHUT");
        }
    }

    // ------------------------------------------------------------------ RAM sections

    /**
     * One RAM section (PART or END) with {@code pages}: section header, page records (plain: PAGE
     * and ZERO on the main channel; multifd: normal pages in packets, zero pages as ZERO records
     * (legacy) or in the packets (modern)), then the round's sync (multifd: SYNC on every channel,
     * MULTIFD_FLUSH with modern framing), EOS and the footer. The main channel is flushed.
     * Reusable by a COLO checkpoint (END + EOF).
     */
    public void sendRamSection(int sectionType, DirtyPages pages) throws IOException {
        if (sectionType != SectionType.PART && sectionType != SectionType.END) {
            throw new IllegalArgumentException("RAM page sections are PART or END");
        }
        guard(() -> {
            if (sectionType == SectionType.PART) {
                out.sectionPart(ramSectionId);
            } else {
                out.sectionEnd(ramSectionId);
            }
            sendPages(pages);
            endRamPayload();
        });
        iterations++;
        progress(true);
    }

    /**
     * The live state of a COLO checkpoint (PROTOCOL.md §9.4): END "ram" with {@code pages} (as
     * {@link #sendRamSection}), then EOF, in one final flush of the main channel.
     */
    void sendLiveState(DirtyPages pages) throws IOException {
        guard(() -> {
            out.sectionEnd(ramSectionId);
            sendPages(pages);
            endRamPayload(true);
        });
        iterations++;
        progress(true);
    }

    /** [multifd: flush the batch, sync, MULTIFD_FLUSH (modern)] EOS, footer, flush. */
    private void endRamPayload() throws IOException {
        endRamPayload(false);
    }

    private void endRamPayload(boolean eof) throws IOException {
        if (multifd != null) {
            flushBatch();
            out.flush(); // the destination's main thread must see what precedes the barrier
            multifd.sync();
            if (cfg.framing() == Framing.MODERN) {
                out.ramMultifdFlush();
            }
        }
        out.ramEos().footer(ramSectionId);
        if (eof) {
            out.eof();
        }
        out.flush();
    }

    private void sendPages(DirtyPages pages) throws IOException {
        boolean legacyZero = multifd == null || cfg.framing() == Framing.LEGACY;
        int sinceCheck = 0;
        for (RamBlock block : memory.blocks()) {
            BitSet bits = pages.pagesOf(block);
            if (bits == null) {
                continue;
            }
            String name = block.name();
            MemorySegment image = block.guest();
            for (int p = bits.nextSetBit(0); p >= 0; p = bits.nextSetBit(p + 1)) {
                long off = (long) p << Wire.PAGE_SHIFT;
                if (off >= block.length()) {
                    break;
                }
                if (multifd == null) {
                    if (RamBlock.isZero(image, off)) {
                        out.ramZero(name, off);
                        mainZero++;
                    } else {
                        out.ramPage(name, off, image, off);
                        mainNormal++;
                    }
                } else if (legacyZero && RamBlock.isZero(image, off)) {
                    out.ramZero(name, off);
                    mainZero++;
                } else {
                    queuePage(block, off);
                }
                if (++sinceCheck == PROGRESS_STRIDE) {
                    sinceCheck = 0;
                    progress(false);
                }
            }
        }
    }

    private void queuePage(RamBlock block, long off) throws IOException {
        if (batch != null && batch.block != block) {
            flushBatch();
        }
        if (batch == null) {
            batch = multifd.take();
            batch.block = block;
            batch.blockName = blockName(block);
        }
        batch.offsets[batch.count++] = off;
        if (batch.full()) {
            flushBatch();
        }
    }

    private byte[] blockName(RamBlock block) {
        return names.computeIfAbsent(block, b -> PacketWriter.blockName(b.name()));
    }

    private void flushBatch() throws IOException {
        MultifdPool.Job j = batch;
        if (j == null) {
            return;
        }
        batch = null;
        if (j.count == 0) {
            multifd.recycle(j);
            return;
        }
        multifd.dispatch(j);
    }

    // ------------------------------------------------------------------ stats, errors

    /** Counters so far. */
    public SendStats stats() {
        long mfBytes = 0;
        long normal = mainNormal;
        long zero = mainZero;
        long packets = 0;
        long syncs = 0;
        if (multifd != null) {
            mfBytes = multifd.bytes.sum();
            normal += multifd.normalPages.sum();
            zero += multifd.zeroPages.sum();
            packets = multifd.packets.sum();
            syncs = multifd.syncs();
        }
        return new SendStats(phase, out.totalBytes(), mfBytes, normal, zero, packets, syncs, iterations,
                System.nanoTime() - startNanos);
    }

    /** PONG values received on the return path so far (empty without it). */
    public List<Integer> pongs() {
        return returnPath == null ? List.of() : List.copyOf(returnPath.pongs());
    }

    public SenderConfig config() {
        return cfg;
    }

    public GuestMemory memory() {
        return memory;
    }

    private void progress(boolean force) {
        if (cfg.progress() == null) {
            return;
        }
        long now = System.nanoTime();
        if (force || now - lastProgress >= progressIntervalNanos) {
            lastProgress = now;
            cfg.progress().accept(stats());
        }
    }

    private void expect(State s, String what) {
        if (state != s) {
            throw new IllegalStateException(what + "() not allowed in state " + state);
        }
    }

    @FunctionalInterface
    interface IoAction {
        void run() throws IOException;
    }

    // ------------------------------------------------------------------ COLO hooks (ColoPrimary)

    /** The main-channel encoder; write only inside {@link #onMain}. */
    StreamWriter stream() {
        return out;
    }

    SocketChannel mainSocket() {
        return main;
    }

    Tripwire tripwire() {
        return trip;
    }

    void phase(String p) {
        phase = p;
    }

    /** Runs a main-channel action with the session's failure handling (one-line errors, close). */
    void onMain(IoAction a) throws IOException {
        guard(a);
    }

    /** Marks the session failed and closes it, reporting {@code e} as the best cause found. */
    IOException failed(Exception e) {
        state = State.FAILED;
        IOException report = explain(e);
        close();
        return report != null ? report : new MigrationException(phase + " failed: " + describe(e), e);
    }

    /**
     * After {@link #complete}, with the return path: waits for the destination's SHUT(0), after
     * which the reader thread has stopped and the main socket carries raw COLO messages.
     */
    void awaitReturnPathShut() throws IOException {
        if (returnPath == null) {
            return;
        }
        int value = awaitShut();
        if (value != 0) {
            throw new MigrationException("destination reported a failed migration (return-path SHUT " + value + ")");
        }
    }

    /** Fault injection: RST on every connection (SO_LINGER 0, close), main and multifd. */
    void resetAll() {
        reset(main);
        if (multifd != null) {
            multifd.resetAll();
        }
    }

    /** Fault injection: RST on the main channel only. */
    void resetMain() {
        reset(main);
    }

    /** Fault injection: RST on one multifd channel; the others and the main channel go on. */
    void resetMultifd(int id) {
        if (multifd == null || id < 0 || id >= multifd.channelCount()) {
            throw new IllegalArgumentException("no multifd channel " + id);
        }
        multifd.resetChannel(id);
    }

    int multifdChannels() {
        return multifd == null ? 0 : multifd.channelCount();
    }

    /** An abortive close: the peer gets a RST instead of a FIN. */
    static void reset(SocketChannel c) {
        try {
            c.setOption(StandardSocketOptions.SO_LINGER, 0);
        } catch (IOException | RuntimeException ignored) {
            // already closed
        }
        closeQuietly(c);
    }

    /** Runs a main-channel action; on failure marks the session failed and reports the best cause. */
    private void guard(IoAction a) throws IOException {
        if (state == State.FAILED) {
            throw new IllegalStateException("the session has failed");
        }
        busy = true;
        try {
            a.run();
        } catch (IOException | RuntimeException e) {
            state = State.FAILED;
            IOException report = explain(e);
            close();
            if (report != null) {
                throw report;
            }
            throw e;
        } finally {
            busy = false;
        }
    }

    /**
     * Turns a failure into a one-line MigrationException naming the phase, preferring what the
     * destination said (SHUT) and a multifd channel's own error over the main channel's symptom.
     */
    private IOException explain(Exception e) {
        String cause;
        if (stallMessage != null) {
            cause = stallMessage;
        } else if (returnPath != null && returnPath.shut().isDone() && !returnPath.shut().isCompletedExceptionally()
                && returnPath.shut().join() != 0) {
            cause = "destination reported a failed migration (return-path SHUT " + returnPath.shut().join() + ")";
        } else if (e instanceof MigrationException me) {
            cause = me.getMessage();
        } else if (multifd != null && multifdFailure() != null) {
            cause = multifdFailure();
        } else if (e instanceof IOException io) {
            cause = "main channel: " + describe(io);
        } else {
            return null;
        }
        return new MigrationException(phase + " failed: " + cause, e);
    }

    private String multifdFailure() {
        try {
            multifd.checkFailure();
            return null;
        } catch (IOException channel) {
            return channel.getMessage();
        }
    }

    @Override
    public void close() {
        closed = true;
        if (multifd != null) {
            multifd.close();
        }
        closeQuietly(main);
        if (returnPath != null) {
            returnPath.shut().completeExceptionally(new MigrationException("session closed"));
        }
    }

    /** One line for an I/O failure, with a hint when the peer went away. */
    static String describe(Throwable t) {
        if (t instanceof ClosedChannelException) {
            return "connection closed";
        }
        String m = t.getMessage();
        if (m == null || m.isBlank()) {
            return t.getClass().getSimpleName();
        }
        if (m.contains("Broken pipe") || m.contains("Connection reset")) {
            return "connection closed by the destination (" + m + "); it probably rejected the stream";
        }
        return m.replace('\n', ' ');
    }

    static String hostPort(InetSocketAddress a) {
        return a.getHostString() + ":" + a.getPort();
    }

    private static void closeQuietly(SocketChannel c) {
        try {
            c.close();
        } catch (IOException ignored) {
            // nothing to do
        }
    }

    /** True when the session can compress with {@code c} (the compressors may not be built in). */
    public static boolean compressionAvailable(Compression c) {
        return PacketCompressor.available(c);
    }
}
