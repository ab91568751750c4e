package dev.multifdcolo.primary;

import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.encode.PacketWriter;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;

/**
 * The multifd send side: N connected channels, one thread each, fed through bounded queues of
 * recycled {@link Job}s. The thread that owns the pool (the session's sending thread) fills jobs
 * with page offsets and {@link #dispatch dispatches} them; channel threads build the packet header
 * and write header + payload straight from the guest image (no copy for compression none).
 *
 * <p>{@link #sync()} is QEMU's {@code multifd_send_sync_main}: one SYNC packet on every channel,
 * behind everything already queued there, and wait until all were written.
 */
final class MultifdPool implements AutoCloseable {
    private static final long POLL_MS = 50;

    /** A unit of work for a channel: a data packet's pages, a SYNC, or the end. */
    static final class Job {
        static final int DATA = 0;
        static final int SYNC = 1;
        static final int STOP = 2;

        final int kind;
        final long[] offsets;
        RamBlock block;
        byte[] blockName;
        int count;
        /**
         * packet_num, given when the job is queued (by the one producer thread), not when a
         * channel writes it: QEMU numbers packets in the migration thread too, so the numbers
         * follow the queueing order whatever order the channel threads run in.
         */
        long packetNum;

        Job(int kind) {
            this.kind = kind;
            this.offsets = kind == DATA ? new long[Wire.PAGES_PER_PACKET] : null;
        }

        boolean full() {
            return count == offsets.length;
        }
    }

    private static final Job STOP = new Job(Job.STOP);

    private final Framing framing;
    private final Tripwire trip;
    private final Compression compression;
    private final int level;
    private final List<Channel> channels = new ArrayList<>();
    private final ArrayBlockingQueue<Job> free;
    private final Semaphore synced = new Semaphore(0);
    private final AtomicReference<Throwable> failure = new AtomicReference<>();
    private final AtomicLong packetNum = new AtomicLong();
    final LongAdder bytes = new LongAdder();
    final LongAdder normalPages = new LongAdder();
    final LongAdder zeroPages = new LongAdder();
    final LongAdder packets = new LongAdder();
    private long syncs;
    private int next;

    private MultifdPool(Framing framing, Compression compression, int level, int channels, int depth, Tripwire trip) {
        this.framing = framing;
        this.trip = trip;
        this.compression = compression;
        this.level = level;
        int jobs = channels * (depth + 2) + 1;
        this.free = new ArrayBlockingQueue<>(jobs);
        for (int i = 0; i < jobs; i++) {
            free.add(new Job(Job.DATA));
        }
    }

    /**
     * Connects {@code cfg.multifdChannels()} channels one after another, writes each hello (ids in
     * connect order) and starts the channel threads.
     */
    static MultifdPool open(SenderConfig cfg, Tripwire trip) throws IOException {
        MultifdPool pool = new MultifdPool(cfg.framing(), cfg.compression(), cfg.compressionLevel(),
                cfg.multifdChannels(), cfg.queueDepth(), trip);
        try {
            for (int id = 0; id < cfg.multifdChannels(); id++) {
                SocketChannel sc = MigrationSender.connectSocket(cfg.address(), cfg.socketSendBuffer(), cfg.connectTimeout());
                Channel ch = pool.new Channel(id, sc, cfg.queueDepth());
                pool.channels.add(ch);
                ByteBuffer hello = PacketWriter.hello(cfg.uuid(), id);
                while (hello.hasRemaining()) {
                    pool.bytes.add(sc.write(hello));
                }
            }
            for (Channel ch : pool.channels) {
                ch.thread.start();
            }
        } catch (IOException | RuntimeException e) {
            pool.close();
            throw e;
        }
        return pool;
    }

    int channelCount() {
        return channels.size();
    }

    long syncs() {
        return syncs;
    }

    /** A free job to fill (blocks while all jobs are queued or being written). */
    Job take() throws IOException {
        try {
            Job j;
            while ((j = free.poll(POLL_MS, TimeUnit.MILLISECONDS)) == null) {
                checkFailure();
            }
            return j;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MigrationException("interrupted while waiting for a multifd channel");
        }
    }

    /** Returns an unused job. */
    void recycle(Job j) {
        j.count = 0;
        j.block = null;
        j.blockName = null;
        free.offer(j);
    }

    /** Queues a filled job on the next channel that has room (round robin, as QEMU picks). */
    void dispatch(Job j) throws IOException {
        checkFailure();
        j.packetNum = packetNum.getAndIncrement();
        int n = channels.size();
        for (int k = 0; k < n; k++) {
            int i = (next + k) % n;
            if (channels.get(i).queue.offer(j)) {
                next = (i + 1) % n;
                return;
            }
        }
        Channel ch = channels.get(next);
        next = (next + 1) % n;
        put(ch, j);
    }

    private void put(Channel ch, Job j) throws IOException {
        try {
            while (!ch.queue.offer(j, POLL_MS, TimeUnit.MILLISECONDS)) {
                checkFailure();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MigrationException("interrupted while queueing a multifd packet");
        }
    }

    /** One SYNC packet per channel after everything queued; returns once all were written. */
    void sync() throws IOException {
        for (Channel ch : channels) {
            Job sync = new Job(Job.SYNC);
            sync.packetNum = packetNum.getAndIncrement();
            put(ch, sync);
        }
        try {
            while (!synced.tryAcquire(channels.size(), POLL_MS, TimeUnit.MILLISECONDS)) {
                checkFailure();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MigrationException("interrupted while waiting for the multifd sync");
        }
        syncs++;
        checkFailure();
    }

    /** Lets every channel thread finish what is queued and end; the sockets stay open. */
    void stop() throws IOException {
        for (Channel ch : channels) {
            put(ch, STOP);
        }
        for (Channel ch : channels) {
            try {
                while (!ch.thread.join(java.time.Duration.ofMillis(POLL_MS))) {
                    checkFailure();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new MigrationException("interrupted while stopping multifd channels");
            }
        }
        checkFailure();
    }

    void checkFailure() throws IOException {
        Throwable t = failure.get();
        if (t != null) {
            throw new MigrationException(t instanceof MigrationException ? t.getMessage()
                    : "multifd: " + MigrationSender.describe(t), t);
        }
    }

    /** Records the first failure and closes every socket so that blocked writers wake up. */
    void fail(Throwable t) {
        if (failure.compareAndSet(null, t)) {
            closeSockets();
        }
    }

    /**
     * Fault injection: resets channel {@code id} (RST: SO_LINGER 0 + close) and lets its thread
     * drop whatever is queued for it from now on — the other channels and the main channel go on,
     * as if only that one connection broke.
     */
    void resetChannel(int id) {
        Channel ch = channels.get(id);
        ch.dead = true;
        MigrationSender.reset(ch.socket);
    }

    /** Fault injection: resets every channel (RST). */
    void resetAll() {
        for (Channel ch : channels) {
            MigrationSender.reset(ch.socket);
        }
    }

    private void closeSockets() {
        for (Channel ch : channels) {
            try {
                ch.socket.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }

    @Override
    public void close() {
        failure.compareAndSet(null, new MigrationException("multifd channels closed"));
        closeSockets();
        for (Channel ch : channels) {
            ch.thread.interrupt();
        }
        // wait (bounded) until the writers have let go of the guest memory: the caller closes it
        // next, and a shared arena cannot close while a thread still holds one of its segments
        // ("Session is acquired by 4 clients" after a stalled destination)
        for (Channel ch : channels) {
            if (ch.thread == Thread.currentThread()) {
                continue;
            }
            try {
                if (!ch.thread.join(java.time.Duration.ofSeconds(5))) {
                    System.getLogger(MultifdPool.class.getName()).log(System.Logger.Level.WARNING,
                            "multifd channel " + ch.id + " writer still running 5 s after close");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** One multifd connection and its writer thread. */
    private final class Channel implements Runnable {
        private static final long WINDOW = 1L << 30;

        final int id;
        final SocketChannel socket;
        final ArrayBlockingQueue<Job> queue;
        final Thread thread;
        /** Cut by fault injection: jobs are dropped (SYNCs still count as written). */
        volatile boolean dead;
        private final PacketWriter packet = new PacketWriter();
        private final long[] entries = new long[Wire.PAGES_PER_PACKET];
        private final long[] zeros = new long[Wire.PAGES_PER_PACKET];
        private final ByteBuffer[] iov = new ByteBuffer[Wire.PAGES_PER_PACKET + 1];
        private final Map<RamBlock, ByteBuffer[][]> views = new IdentityHashMap<>();
        private PacketCompressor compressor;
        private ByteBuffer staging;
        private MemorySegment stagingSegment;
        private ByteBuffer compressed;

        Channel(int id, SocketChannel socket, int depth) {
            this.id = id;
            this.socket = socket;
            this.queue = new ArrayBlockingQueue<>(depth);
            this.thread = Thread.ofPlatform().name("multifd-send-" + id).daemon().unstarted(this);
        }

        @Override
        public void run() {
            try {
                if (compression != Compression.NONE) {
                    compressor = PacketCompressor.create(compression, level);
                    staging = ByteBuffer.allocateDirect(Wire.MULTIFD_PACKET_SIZE);
                    stagingSegment = MemorySegment.ofBuffer(staging);
                    compressed = ByteBuffer.allocateDirect(
                            PacketCompressor.maxCompressedSize(compression, Wire.MULTIFD_PACKET_SIZE));
                }
                while (true) {
                    Job j = queue.take();
                    if (j.kind == Job.STOP) {
                        return;
                    }
                    if (j.kind == Job.SYNC) {
                        int alloc = framing == Framing.LEGACY ? Wire.PAGES_PER_PACKET : 0;
                        ByteBuffer h = packet.sync(j.packetNum, alloc);
                        try {
                            if (!dead) {
                                write(h);
                            }
                        } catch (Tripwire.FaultInjectedException e) {
                            if (!dead) {
                                throw e;
                            }
                        }
                        packets.increment();
                        synced.release();
                        continue;
                    }
                    try {
                        if (!dead) {
                            writeData(j);
                        }
                    } catch (Tripwire.FaultInjectedException e) {
                        if (!dead) {
                            throw e;
                        }
                    } finally {
                        recycle(j);
                    }
                }
            } catch (InterruptedException e) {
                fail(new MigrationException("multifd channel " + id + " interrupted"));
            } catch (Throwable t) {
                fail(t instanceof IOException io
                        ? new MigrationException("multifd channel " + id + ": " + MigrationSender.describe(io), io)
                        : t);
            } finally {
                if (compressor != null) {
                    compressor.close();
                }
            }
        }

        private final ByteBuffer[] one = new ByteBuffer[1];

        private void write(ByteBuffer b) throws IOException {
            if (trip.armed() || trip.fired()) {
                one[0] = b;
                try {
                    bytes.add(trip.write(id, socket::write, one, 0, 1));
                } finally {
                    one[0] = null;
                }
                return;
            }
            while (b.hasRemaining()) {
                bytes.add(socket.write(b));
            }
        }

        private void writeData(Job j) throws IOException {
            MemorySegment image = j.block.guest();
            int n = j.count;
            int normal = 0;
            int zero = 0;
            if (framing == Framing.MODERN) {
                // multifd zero-page detection: zero pages are listed after the normal ones
                for (int i = 0; i < n; i++) {
                    long off = j.offsets[i];
                    if (RamBlock.isZero(image, off)) {
                        zeros[zero++] = off;
                    } else {
                        entries[normal++] = off;
                    }
                }
                System.arraycopy(zeros, 0, entries, normal, zero);
            } else {
                System.arraycopy(j.offsets, 0, entries, 0, n);
                normal = n;
            }
            int flags = compression.flagBits;
            ByteBuffer header;
            long total;
            int k = 1;
            if (compression == Compression.NONE || normal == 0) {
                int payload = normal * Wire.PAGE_SIZE;
                header = packet.data(flags, normal, zero, compression == Compression.NONE ? payload : 0,
                        j.packetNum, j.blockName, entries, 0);
                if (compression == Compression.NONE) {
                    k = pageRuns(j.block, normal, 1);
                } else {
                    payload = 0;
                }
                total = Wire.PACKET_HEADER_LEN + (long) payload;
            } else {
                ByteBuffer in;
                if (isOneRun(normal)) {
                    in = view(j.block, entries[0], normal * Wire.PAGE_SIZE, 0);
                } else {
                    for (int i = 0; i < normal; i++) {
                        MemorySegment.copy(image, entries[i], stagingSegment, (long) i * Wire.PAGE_SIZE, Wire.PAGE_SIZE);
                    }
                    staging.clear().limit(normal * Wire.PAGE_SIZE);
                    in = staging;
                }
                compressed.clear();
                int len = compressor.compress(in, compressed);
                compressed.limit(len).position(0);
                header = packet.data(flags, normal, zero, len, j.packetNum, j.blockName, entries, 0);
                iov[1] = compressed;
                k = 2;
                total = Wire.PACKET_HEADER_LEN + (long) len;
            }
            iov[0] = header;
            if (trip.armed() || trip.fired()) {
                try {
                    bytes.add(trip.write(id, socket::write, iov, 0, k));
                } finally {
                    Arrays.fill(iov, 0, k, null);
                }
            } else {
                long left = total;
                while (left > 0) {
                    long w = socket.write(iov, 0, k);
                    left -= w;
                    bytes.add(w);
                }
            }
            for (int i = 0; i < k; i++) {
                iov[i] = null;
            }
            packets.increment();
            normalPages.add(normal);
            zeroPages.add(zero);
        }

        /** True when the normal pages are consecutive and inside one view window. */
        private boolean isOneRun(int normal) {
            for (int i = 1; i < normal; i++) {
                if (entries[i] != entries[i - 1] + Wire.PAGE_SIZE || entries[i] % WINDOW == 0) {
                    return false;
                }
            }
            return true;
        }

        /** Puts one buffer per run of consecutive normal pages into iov[from..]; returns the end index. */
        private int pageRuns(RamBlock block, int normal, int from) {
            int k = from;
            int i = 0;
            while (i < normal) {
                long start = entries[i];
                int len = Wire.PAGE_SIZE;
                i++;
                while (i < normal && entries[i] == start + len && entries[i] % WINDOW != 0) {
                    len += Wire.PAGE_SIZE;
                    i++;
                }
                iov[k] = view(block, start, len, k);
                k++;
            }
            return k;
        }

        /** A reusable direct view of {@code [off, off + len)} of the block's image, in slot {@code slot}. */
        private ByteBuffer view(RamBlock block, long off, int len, int slot) {
            ByteBuffer[][] windows = views.get(block);
            if (windows == null) {
                windows = new ByteBuffer[(int) ((block.length() + WINDOW - 1) / WINDOW)][];
                views.put(block, windows);
            }
            int w = (int) (off / WINDOW);
            ByteBuffer[] slots = windows[w];
            if (slots == null) {
                slots = windows[w] = new ByteBuffer[Wire.PAGES_PER_PACKET + 1];
            }
            ByteBuffer v = slots[slot];
            if (v == null) {
                long base = w * WINDOW;
                v = slots[slot] = block.guest().asSlice(base, Math.min(WINDOW, block.length() - base)).asByteBuffer();
            }
            int p = (int) (off - (long) w * WINDOW);
            v.clear().position(p).limit(p + len);
            return v;
        }
    }
}
