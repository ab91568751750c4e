package dev.multifdcolo.secondary;

import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.Future;
import io.vertx.core.Promise;

/**
 * The multifd sync barrier (§4.3): each channel that reads a SYNC packet arrives and stays paused;
 * the main channel, at EOS (legacy) or MULTIFD_FLUSH (modern), waits until all N channels have
 * arrived and then releases them all. Pairing is exact: a paused channel cannot arrive twice.
 *
 * <p>Nothing here blocks: waiting is a {@link Future}, and "paused" means the channel's socket is
 * not read. Called from several event loops, hence the monitor (taken once per sync, not per page).
 */
final class SyncBarrier {
    private final int channels;
    private final Runnable[] waiting;
    private final boolean[] closed;
    private int arrived;
    private Promise<Void> mainWaiter;
    private RuntimeException failure;
    private long generations;

    SyncBarrier(int channels) {
        this.channels = channels;
        this.waiting = new Runnable[channels];
        this.closed = new boolean[channels];
    }

    /** Channel {@code id} read a SYNC; {@code release} resumes it (on its own event loop). */
    void arrive(int id, Runnable release) {
        Promise<Void> complete = null;
        synchronized (this) {
            if (waiting[id] != null) {
                throw new IllegalStateException("channel " + id + " arrived twice");
            }
            waiting[id] = release;
            arrived++;
            if (arrived == channels && mainWaiter != null) {
                complete = mainWaiter;
                mainWaiter = null;
            }
        }
        if (complete != null) {
            complete.complete();
        }
    }

    /** The main channel reached a barrier point. Completes when all channels arrived. */
    Future<Void> await() {
        synchronized (this) {
            if (failure != null) {
                return Future.failedFuture(failure);
            }
            for (int i = 0; i < channels; i++) {
                if (closed[i] && waiting[i] == null) {
                    return Future.failedFuture(new ProtocolException(Rule.SYNC_PROTOCOL,
                            "multifd channel " + i + " closed before reaching the sync"));
                }
            }
            if (arrived == channels) {
                return Future.succeededFuture();
            }
            mainWaiter = Promise.promise();
            return mainWaiter.future();
        }
    }

    /** Releases every arrived channel and opens the next generation. */
    void releaseAll() {
        Runnable[] toRun;
        synchronized (this) {
            toRun = waiting.clone();
            java.util.Arrays.fill(waiting, null);
            arrived = 0;
            generations++;
        }
        for (Runnable r : toRun) {
            if (r != null) {
                r.run();
            }
        }
    }

    /** Channels that arrived at a SYNC the main channel never paired with a barrier. */
    synchronized int unpaired() {
        return arrived;
    }

    synchronized long generations() {
        return generations;
    }

    /** A channel closed: a waiting main channel can never complete if it had not arrived. */
    void channelClosed(int id) {
        Promise<Void> fail = null;
        synchronized (this) {
            closed[id] = true;
            if (waiting[id] == null && mainWaiter != null) {
                fail = mainWaiter;
                mainWaiter = null;
            }
        }
        if (fail != null) {
            fail.fail(new ProtocolException(Rule.SYNC_PROTOCOL, "multifd channel " + id + " closed before reaching the sync"));
        }
    }

    /** The session failed: wake the main channel with the failure. */
    void fail(RuntimeException cause) {
        Promise<Void> w;
        synchronized (this) {
            failure = cause;
            w = mainWaiter;
            mainWaiter = null;
        }
        if (w != null) {
            w.fail(cause);
        }
    }
}
