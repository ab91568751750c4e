package dev.multifdcolo.primary;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Fault injection on the sender's sockets: counts the bytes written on the watched channel(s)
 * since {@link #arm} and, when the armed limit is reached, lets exactly the bytes up to the limit
 * through, then fires — resets the connection(s) or stalls the writing thread. Unarmed it costs
 * one volatile read per write. Thread-safe: the main channel and every multifd channel write
 * through it concurrently.
 */
final class Tripwire {
    /** Channel id of the main channel; multifd channels are 0..n-1. */
    static final int MAIN = -1;
    /** Watch target meaning "every channel". */
    static final int ALL = Integer.MIN_VALUE;

    /** What happens when the wire trips. */
    interface Action {
        /** Called once, on the thread that tripped, after it wrote its last allowed byte. */
        void fire(int channel);
    }

    private final AtomicLong counted = new AtomicLong();
    private final AtomicBoolean fired = new AtomicBoolean();
    private volatile boolean armed;
    private volatile long limit;
    private volatile int target;
    private volatile Action action;
    private volatile boolean stall;
    private volatile CountDownLatch stallRelease = new CountDownLatch(0);

    /**
     * Arms the wire: after {@code bytes} more bytes on {@code target} ({@link #ALL}, {@link #MAIN}
     * or a multifd channel id) the action fires. With {@code stall} the tripping thread then parks
     * until {@link #releaseStall()}, instead of failing at once.
     */
    synchronized void arm(int target, long bytes, boolean stall, Action action) {
        counted.set(0);
        fired.set(false);
        this.target = target;
        this.limit = Math.max(0, bytes);
        this.action = action;
        this.stall = stall;
        this.stallRelease = new CountDownLatch(stall ? 1 : 0);
        this.armed = true;
    }

    synchronized void disarm() {
        armed = false;
    }

    boolean armed() {
        return armed && !fired.get();
    }

    boolean fired() {
        return fired.get();
    }

    /** Bytes counted on the target since {@link #arm}. */
    long counted() {
        return counted.get();
    }

    /** Fires now (a named point of the checkpoint), whatever was counted, then parks/fails this thread. */
    void fireNow(int channel) throws IOException {
        trigger(channel);
        park(channel);
    }

    /** Fires the action now if it has not fired yet; the calling thread goes on. */
    boolean trigger(int channel) {
        if (fired.compareAndSet(false, true)) {
            action.fire(channel);
            return true;
        }
        return false;
    }

    /** Lets a stalled thread go on (it then fails with an I/O error). */
    void releaseStall() {
        stallRelease.countDown();
    }

    private boolean watches(int channel) {
        int t = target;
        return t == ALL || t == channel;
    }

    /**
     * How many of {@code want} bytes {@code channel} may write now (reserving them); 0 when the wire
     * tripped, after firing (and, for a stall, parking) — then it throws.
     */
    long reserve(int channel, long want) throws IOException {
        if (!armed || !watches(channel)) {
            return want;
        }
        while (true) {
            if (fired.get()) {
                park(channel);
            }
            long cur = counted.get();
            long room = limit - cur;
            if (room <= 0) {
                if (fired.compareAndSet(false, true)) {
                    action.fire(channel);
                }
                park(channel);
            }
            long allowed = Math.min(want, room);
            if (counted.compareAndSet(cur, cur + allowed)) {
                return allowed;
            }
        }
    }

    private void park(int channel) throws IOException {
        if (stall) {
            try {
                while (!stallRelease.await(100, TimeUnit.MILLISECONDS)) {
                    if (!armed) {
                        break;
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        throw new FaultInjectedException(channel == MAIN ? "main channel cut by fault injection"
                : "multifd channel " + channel + " cut by fault injection");
    }

    /**
     * Writes {@code bufs[from..from+count)} completely, honouring the wire: a partial write up to
     * the limit, then the fault. Buffers' limits are restored.
     */
    long write(int channel, Writer w, ByteBuffer[] bufs, int from, int count) throws IOException {
        long total = 0;
        for (int i = from; i < from + count; i++) {
            total += bufs[i].remaining();
        }
        long done = 0;
        while (done < total) {
            long allowed = reserve(channel, total - done);
            if (allowed == total - done) {
                while (done < total) {
                    done += w.write(bufs, from, count);
                }
                return done;
            }
            // a cut inside this write: send exactly `allowed` bytes, then trip on the next reserve
            long left = allowed;
            int[] limits = new int[count];
            for (int i = 0; i < count; i++) {
                ByteBuffer b = bufs[from + i];
                limits[i] = b.limit();
                int take = (int) Math.min(left, b.remaining());
                b.limit(b.position() + take);
                left -= take;
            }
            try {
                long target = done + allowed;
                while (done < target) {
                    done += w.write(bufs, from, count);
                }
            } finally {
                for (int i = 0; i < count; i++) {
                    bufs[from + i].limit(limits[i]);
                }
            }
        }
        return done;
    }

    /** The raw gathering write of one socket. */
    @FunctionalInterface
    interface Writer {
        long write(ByteBuffer[] bufs, int from, int count) throws IOException;
    }

    /** The I/O error a cut (or a released stall) raises on the sending thread. */
    static final class FaultInjectedException extends IOException {
        FaultInjectedException(String m) {
            super(m);
        }
    }
}
