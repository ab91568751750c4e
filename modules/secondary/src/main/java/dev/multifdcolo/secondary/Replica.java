package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.net.Connection;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.Future;
import io.vertx.core.Promise;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;

/**
 * A replica: one port, at most one incoming migration at a time. Shared by every instance of the
 * {@link ChannelVerticle} listening on its port, so all its methods are thread-safe.
 */
public final class Replica {
    private final ReplicaConfig config;
    private IncomingMigration current;
    private final ArrayDeque<Promise<MigrationResult>> waiters = new ArrayDeque<>();
    private final Map<Rule, LongAdder> rejections = new EnumMap<>(Rule.class);
    private final LongAdder completed = new LongAdder();
    private final LongAdder failed = new LongAdder();
    private volatile Consumer<IncomingMigration> onSessionStart = s -> { };

    public Replica(ReplicaConfig config) {
        this.config = config;
        for (Rule r : Rule.values()) {
            rejections.put(r, new LongAdder());
        }
    }

    public String name() {
        return config.name();
    }

    public ReplicaConfig config() {
        return config;
    }

    /** Observer for new sessions (progress reporting, metrics). */
    public void onSessionStart(Consumer<IncomingMigration> c) {
        this.onSessionStart = c;
    }

    /** The session a newly classified connection belongs to; creates one if none is active. */
    public IncomingMigration sessionFor(Connection c) {
        Started started;
        synchronized (this) {
            if (current != null && !current.finished()) {
                return current;
            }
            started = startLocked(c);
        }
        announce(started);
        return started.session();
    }

    private record Started(IncomingMigration session, Promise<MigrationResult> waiter) {
    }

    /** A new session (caller holds the lock); {@link #announce} it after releasing the lock. */
    private Started startLocked(Connection c) {
        IncomingMigration[] holder = new IncomingMigration[1];
        IncomingMigration s = new IncomingMigration(config, c.vertx(), () -> ended(holder[0]));
        holder[0] = s;
        current = s;
        return new Started(s, waiters.poll());
    }

    private void announce(Started started) {
        IncomingMigration s = started.session();
        onSessionStart.accept(s);
        s.outcome().onComplete(ar -> {
            if (ar.succeeded()) {
                completed.increment();
            } else {
                failed.increment();
                if (ar.cause() instanceof MigrationFailedException m && m.rule() != null) {
                    rejections.get(m.rule()).increment();
                }
            }
        });
        if (started.waiter() != null) {
            s.outcome().onComplete(started.waiter());
        }
    }

    // ------------------------------------------------------------------ TLS: classification by accept order

    /**
     * TLS connections by accept sequence: still in their handshake, and done with it but waiting
     * for an earlier-accepted one (which may yet become the main channel). Guarded by this.
     */
    private final java.util.TreeMap<Long, Connection> handshaking = new java.util.TreeMap<>();
    private final java.util.TreeMap<Long, Connection> ready = new java.util.TreeMap<>();
    private long acceptSeq;

    /** Where a TLS connection goes: its session and whether it is the main channel. */
    public record Placement(Connection connection, IncomingMigration session, boolean main) {
    }

    /** TLS connections accepted and still in their handshake (status, tests). */
    public synchronized int tlsHandshaking() {
        return handshaking.size();
    }

    /**
     * A TLS connection was accepted (called from its connect handler, on its event loop): its
     * place in the accept order. Connections handed to different event loops at the same moment
     * may register in either order; a QEMU source cannot be affected, because it connects its
     * multifd channels only after the main channel's handshake, which needs this registration.
     */
    public synchronized long tlsAccepted(Connection c) {
        long seq = ++acceptSeq;
        handshaking.put(seq, c);
        return seq;
    }

    /**
     * A TLS connection finished its handshake ({@code ok}) or failed it. Classification by accept
     * order among authenticated connections: the main channel of a session is the earliest
     * accepted connection that completes its handshake, so a connection is only placed once no
     * earlier-accepted one is still in its handshake (that one could be the main channel); every
     * later one is a multifd channel. Placements are handed to {@code place} outside the lock.
     */
    public void tlsHandshakeEnded(long seq, Connection c, boolean ok, Consumer<Placement> place) {
        List<Placement> out = new ArrayList<>();
        List<Started> started = new ArrayList<>();
        synchronized (this) {
            handshaking.remove(seq);
            if (ok) {
                ready.put(seq, c);
            }
            while (!ready.isEmpty()) {
                long first = ready.firstKey();
                IncomingMigration s = current;
                boolean mainTaken = s != null && !s.finished() && s.mainClaimed();
                if (!mainTaken && !handshaking.isEmpty() && handshaking.firstKey() < first) {
                    break;    // an earlier accept is still in its handshake: it may be the main channel
                }
                Connection next = ready.remove(first);
                if (s == null || s.finished()) {
                    Started st = startLocked(next);
                    started.add(st);
                    s = st.session();
                }
                Boolean main = s.claimByOrder(next);
                if (main == null) {       // cannot happen under this lock: the session is live
                    ready.put(first, next);
                    continue;
                }
                out.add(new Placement(next, s, main));
            }
        }
        started.forEach(this::announce);
        out.forEach(place);
    }

    private synchronized void ended(IncomingMigration s) {
        if (current == s) {
            current = null;
        }
    }

    /** The outcome of the next migration to start on this port (or the one running now, if any). */
    public Future<MigrationResult> nextMigration() {
        synchronized (this) {
            if (current != null && !current.finished()) {
                return current.outcome();
            }
            Promise<MigrationResult> p = Promise.promise();
            waiters.add(p);
            return p.future();
        }
    }

    /**
     * Deploys what this replica needs on {@code vertx}: the flush/mirror worker verticles when it
     * is a COLO replica, then {@code instances} channel verticles sharing its port.
     *
     * @return the deployment ids (undeploy them to stop the replica)
     */
    public Future<java.util.List<String>> deploy(io.vertx.core.Vertx vertx, int instances) {
        if (config.compression() != dev.multifdcolo.wire.Compression.NONE) {
            // load the native codec once off the event loops (zstd-jni's first use costs ~300 ms)
            vertx.executeBlocking(() -> {
                dev.multifdcolo.wire.compress.PageDecompressor.create(config.compression()).close();
                return null;
            });
        }
        Future<String> workers = config.colo()
                ? dev.multifdcolo.secondary.colo.MemoryWorkerVerticle.deploy(vertx, config.coloOptions().flushWorkers())
                : Future.succeededFuture(null);
        return workers.compose(w -> vertx.deployVerticle(() -> new ChannelVerticle(this),
                        new io.vertx.core.DeploymentOptions().setInstances(instances))
                .map(c -> w == null ? java.util.List.of(c) : java.util.List.of(c, w)));
    }

    /** Manual failover (operator command): ends COLO keeping the last committed checkpoint. */
    public boolean failover(String reason) {
        IncomingMigration s = current();
        if (s == null || s.finished()) {
            return false;
        }
        s.failover(reason);
        return true;
    }

    public synchronized IncomingMigration current() {
        return current;
    }

    private io.netty.handler.ssl.SslContext sslContext;

    /**
     * The TLS server context of this replica's port, loaded once and shared by its channel
     * verticles (a Netty {@code SslContext} is thread-safe); null without TLS.
     *
     * @throws IllegalArgumentException the key material cannot be loaded (the reason is in the message)
     */
    public synchronized io.netty.handler.ssl.SslContext sslContext(io.vertx.core.Vertx vertx) {
        if (config.tls() == null) {
            return null;
        }
        if (sslContext == null) {
            sslContext = config.tls().serverContext(vertx);
        }
        return sslContext;
    }

    /** A connection refused before it joined a session (bad magic, ...). */
    public void countRejection(ProtocolException e) {
        rejections.get(e.rule()).increment();
    }

    public long rejections(Rule r) {
        return rejections.get(r).sum();
    }

    public long completed() {
        return completed.sum();
    }

    public long failed() {
        return failed.sum();
    }
}
