package dev.multifdcolo.app.service;

import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.MigrationStats;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.json.JsonObject;


/**
 * A replica as the service runs it: its {@link Replica}, deployment ids, metrics, and the image
 * of its last completed (or failed-over) migration, held until the next one replaces it so the
 * control API can write it. The held image is reference counted: a write in progress keeps it
 * open even when a newer result replaces it.
 */
public final class ManagedReplica {
    private final ReplicaConfig config;
    private final Replica replica;
    private volatile ReplicaMetrics metrics;
    private volatile boolean stopping;
    private volatile boolean listening;
    private Held held;
    private volatile MigrationResult lastResult;

    /** A result whose memory stays open while {@code users > 0} or until replaced. */
    public static final class Held {
        private final MigrationResult result;
        private int users;
        private boolean dropped;

        Held(MigrationResult result) {
            this.result = result;
        }

        public MigrationResult result() {
            return result;
        }
    }

    public ManagedReplica(ReplicaConfig config) {
        this.config = config;
        this.replica = new Replica(config);
    }

    /** The replica's configuration now (its live part follows config edits). */
    public ReplicaConfig config() {
        return replica.config();
    }

    public Replica replica() {
        return replica;
    }

    public String name() {
        return config.name();
    }

    /** The replica's listeners are up (it is undeployed through {@link Replica#undeploy}). */
    public void started() {
        listening = true;
    }

    public boolean listening() {
        return listening;
    }

    public boolean stopping() {
        return stopping;
    }

    public void markStopping() {
        stopping = true;
    }

    public void metrics(ReplicaMetrics m) {
        metrics = m;
    }

    public ReplicaMetrics metrics() {
        return metrics;
    }

    /** Keeps {@code r} (when {@code retain}) as the replica's image, releasing the previous one. */
    public void completed(MigrationResult r, boolean retain) {
        lastResult = r;
        if (!retain) {
            return;
        }
        Held old;
        synchronized (this) {
            old = held;
            held = new Held(r);
        }
        if (old != null) {
            drop(old);
        }
    }

    /** The held image, pinned until {@link #release}; null when the replica holds none. */
    public synchronized Held acquire() {
        if (held == null) {
            return null;
        }
        held.users++;
        return held;
    }

    public void release(Held h) {
        boolean close;
        synchronized (this) {
            h.users--;
            close = h.users == 0 && h.dropped;
        }
        if (close) {
            h.result.memory().close();
        }
    }

    private void drop(Held h) {
        boolean close;
        synchronized (this) {
            h.dropped = true;
            close = h.users == 0;
        }
        if (close) {
            h.result.memory().close();
        }
    }

    /**
     * Before a reset of a file-backed replica: the next migration truncates the files the held
     * image is mapped from, so the held image is dropped first.
     *
     * @return false while the held image is being written (the reset must wait)
     */
    public boolean dropHeldForReset() {
        Held old;
        synchronized (this) {
            if (held != null && held.users > 0) {
                return false;
            }
            old = held;
            held = null;
        }
        if (old != null) {
            drop(old);
        }
        return true;
    }

    /** Releases everything (the replica was removed or the service stops). */
    public void close() {
        Held old;
        synchronized (this) {
            old = held;
            held = null;
        }
        if (old != null) {
            drop(old);
        }
        ReplicaMetrics m = metrics;
        if (m != null) {
            m.close();
        }
        listening = false;
    }

    /** Status as the control API shows it. */
    public JsonObject status() {
        IncomingMigration s = replica.current();
        boolean active = s != null && !s.finished();
        MigrationResult last = lastResult;
        JsonObject j = new JsonObject()
                .put("name", config.name())
                .put("listen", config.host() + ":" + config.port())
                .put("colo", config.colo())
                .put("tls", config.tls() == null ? null
                        : new JsonObject().put("client-auth", config.tls().clientAuthRequired() ? "required" : "none"))
                .put("multifd-channels", config.multifdChannels())
                .put("multifd-compression", config.compression().qemuName())
                .put("listening", listening)
                .put("stopping", stopping)
                .put("phase", active ? s.phase().name() : ReplicaMetrics.IDLE)
                .put("refusing", replica.refusing())
                .put("open-connections", replica.openConnections())
                .put("completed", replica.completed())
                .put("failed", replica.failed());
        if (active) {
            j.put("epoch", s.epoch());
            j.put("last-checkpoint", checkpoint(s.lastCheckpoint()));
            j.put("failover-reason", s.failoverReason());
            j.put("stats", stats(s.stats()));
        } else if (last != null) {
            j.put("epoch", last.colo() == null ? null : last.colo().epoch());
            j.put("last-checkpoint", last.colo() == null ? null : checkpoint(last.colo().last()));
            j.put("failover-reason", last.colo() == null ? null : last.colo().failoverReason());
            j.put("stats", stats(last.stats()));
        }
        Held h;
        synchronized (this) {
            h = held;
        }
        if (h != null) {
            MigrationResult r = h.result;
            j.put("image", new JsonObject().put("machine", r.machine()).put("bytes", r.memory().totalBytes())
                    .put("epoch", r.colo() == null ? null : r.colo().epoch()));
        }
        JsonObject rej = new JsonObject();
        for (Rule rule : Rule.values()) {
            long n = replica.rejections(rule);
            if (n > 0) {
                rej.put(rule.id(), n);
            }
        }
        j.put("rejections", rej);
        return j;
    }

    static JsonObject checkpoint(Checkpoint cp) {
        if (cp == null) {
            return null;
        }
        return new JsonObject().put("epoch", cp.epoch()).put("dirty-pages", cp.dirtyPages()).put("runs", cp.runs())
                .put("transfer-ms", cp.transferNanos() / 1e6).put("flush-ms", cp.flushNanos() / 1e6)
                .put("pause-ms", cp.pauseNanos() / 1e6).put("blob-bytes", cp.blobBytes()).put("digest", cp.digest());
    }

    static JsonObject stats(MigrationStats st) {
        io.vertx.core.json.JsonArray ch = new io.vertx.core.json.JsonArray();
        for (int c = -1; c < st.channels(); c++) {
            ch.add(st.channelBytes(c));
        }
        return new JsonObject().put("bytes", st.bytes.sum()).put("normal-pages", st.normalPages.sum())
                .put("zero-pages", st.zeroPages.sum()).put("packets", st.packets.sum()).put("syncs", st.syncs.sum())
                .put("channel-bytes", ch);
    }
}
