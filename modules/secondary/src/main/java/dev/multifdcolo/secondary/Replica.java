package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.colo.MemoryWorkerVerticle;
import dev.multifdcolo.secondary.colo.WorkerPool;
import dev.multifdcolo.secondary.net.Connection;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;
import java.util.logging.Logger;

/**
 * A replica: one port, at most one incoming migration at a time. Shared by every instance of the
 * {@link ChannelVerticle} listening on its port, so all its methods are thread-safe.
 *
 * <p>Its configuration has a structural part (port, channels, compression, backing, ...) fixed
 * for the replica's life, and a live part ({@link #reconfigure}): heartbeat, flush workers,
 * digest-on-commit and the guards (timeouts, connection limit, after-failover policy), which
 * apply to a migration in progress.
 */
public final class Replica {
    private static final Logger LOG = Logger.getLogger(Replica.class.getName());
    private static final AtomicInteger POOLS = new AtomicInteger();

    private volatile ReplicaConfig config;
    private IncomingMigration current;
    private final ArrayDeque<Promise<MigrationResult>> waiters = new ArrayDeque<>();
    private final Map<Rule, LongAdder> rejections = new EnumMap<>(Rule.class);
    private final LongAdder completed = new LongAdder();
    private final LongAdder failed = new LongAdder();
    private final AtomicInteger open = new AtomicInteger();
    private volatile Consumer<IncomingMigration> onSessionStart = s -> { };
    private volatile WorkerPool workers;
    private volatile Vertx vertx;
    private final List<String> channelDeployments = new ArrayList<>();
    /** Set when a migration failed over and the policy is to refuse the next one (until {@link #reset}). */
    private String refusing;
    private volatile boolean accepting = true;

    public Replica(ReplicaConfig config) {
        this.config = config;
        for (Rule r : Rule.values()) {
            rejections.put(r, new LongAdder());
        }
    }

    public String name() {
        return config.name();
    }

    /** The current configuration (its live part may change while a migration runs). */
    public ReplicaConfig config() {
        return config;
    }

    /** Observer for new sessions (progress reporting, metrics). */
    public void onSessionStart(Consumer<IncomingMigration> c) {
        this.onSessionStart = c;
    }

    // ------------------------------------------------------------------ connections

    /**
     * Counts a newly accepted connection against {@code max-connections}.
     *
     * @return null when admitted (call {@link #connectionClosed} when it closes), else the reason
     */
    public ProtocolException admitConnection(String remote) {
        if (!accepting) {
            return new ProtocolException(Rule.CONNECTION_LIMIT, "replica " + name() + " is shutting down: connection from "
                    + remote + " refused");
        }
        int max = config.guards().maxConnections();
        int n = open.incrementAndGet();
        if (n > max) {
            open.decrementAndGet();
            return new ProtocolException(Rule.CONNECTION_LIMIT, "replica " + name() + " has " + max
                    + " open connections (max-connections): connection from " + remote + " refused");
        }
        return null;
    }

    public void connectionClosed() {
        open.decrementAndGet();
    }

    /** Open connections on this replica's port (admitted ones). */
    public int openConnections() {
        return open.get();
    }

    /** Stops admitting connections (shutdown): every new one is refused at once. */
    public void stopAccepting() {
        accepting = false;
    }

    /**
     * The session a newly classified connection belongs to; creates one if none is active.
     *
     * @throws ProtocolException when the replica refuses new migrations (it failed over)
     */
    public IncomingMigration sessionFor(Connection c) {
        Started started;
        synchronized (this) {
            if (current != null && !current.finished()) {
                return current;
            }
            started = startLocked(c);
            if (started == null) {
                throw refusal(c);
            }
        }
        announce(started);
        return started.session();
    }

    private record Started(IncomingMigration session, Promise<MigrationResult> waiter) {
    }

    /**
     * A new session (caller holds the lock); {@link #announce} it after releasing the lock. Null
     * when the replica refuses new migrations after a failover ({@link #refusal}).
     */
    private Started startLocked(Connection c) {
        if (refusing != null) {
            return null;
        }
        IncomingMigration[] holder = new IncomingMigration[1];
        IncomingMigration s = new IncomingMigration(this, c.vertx(), () -> ended(holder[0]));
        holder[0] = s;
        current = s;
        return new Started(s, waiters.poll());
    }

    /** Why {@code c} cannot start a migration: the replica failed over and refuses until reset. */
    public synchronized ProtocolException refusal(Connection c) {
        return new ProtocolException(Rule.REPLICA_FAILED_OVER, "replica " + name() + " " + refusing
                + "; it refuses new migrations (after-failover: refuse) until reset: connection from "
                + c.remote() + " refused");
    }

    private void announce(Started started) {
        IncomingMigration s = started.session();
        onSessionStart.accept(s);
        s.outcome().onComplete(ar -> {
            if (ar.succeeded()) {
                completed.increment();
                if (ar.result().colo() != null && !config.guards().acceptAfterFailover()) {
                    synchronized (this) {
                        refusing = "failed over at checkpoint " + ar.result().colo().epoch();
                    }
                }
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

    /** Where a TLS connection goes: its session (null: refused, see {@link #refusal}) and whether it is the main channel. */
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
                    if (st == null) {
                        out.add(new Placement(next, null, false));     // refused: the replica failed over
                        continue;
                    }
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

    /** Why new migrations are refused (null: they are accepted). */
    public synchronized String refusing() {
        return refusing;
    }

    /**
     * Operator reset after a failover: the next migration is accepted (and replaces the
     * failed-over image). @return false when nothing was refused
     */
    public synchronized boolean reset() {
        boolean was = refusing != null;
        refusing = null;
        return was;
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

    // ------------------------------------------------------------------ deployment

    /**
     * Deploys what this replica needs on {@code vertx}: its flush worker verticles when it is a
     * COLO replica, then {@code instances} channel verticles sharing its port.
     *
     * @return the deployment ids ({@link #undeploy} stops them all, including resized worker pools)
     */
    public Future<List<String>> deploy(Vertx vertx, int instances) {
        return deploy(vertx, instances, config.port());
    }

    /** As {@link #deploy(Vertx, int)} on {@code port} (a port picked for a port-0 replica). */
    public Future<List<String>> deploy(Vertx vertx, int instances, int port) {
        this.vertx = vertx;
        if (config.compression() != Compression.NONE) {
            // load the native codec once off the event loops (zstd-jni's first use costs ~300 ms)
            vertx.executeBlocking(() -> {
                dev.multifdcolo.wire.compress.PageDecompressor.create(config.compression()).close();
                return null;
            });
        }
        Future<String> w = deployWorkers(vertx);
        return w.compose(wid -> vertx.deployVerticle(() -> new ChannelVerticle(this, port),
                        new DeploymentOptions().setInstances(instances))
                .map(c -> {
                    synchronized (channelDeployments) {
                        channelDeployments.add(c);
                    }
                    return wid == null ? List.of(c) : List.of(c, wid);
                }));
    }

    /** Deploys the flush workers of a COLO replica (no-op otherwise); @return their deployment id or null. */
    public Future<String> deployWorkers(Vertx vertx) {
        this.vertx = vertx;
        if (!config.colo()) {
            return Future.succeededFuture(null);
        }
        return WorkerPool.deploy(vertx, MemoryWorkerVerticle.ADDRESS + "." + name() + "." + POOLS.incrementAndGet(),
                config.coloOptions().flushWorkers()).map(p -> {
                    workers = p;
                    return p.deploymentId();
                });
    }

    /**
     * The flush worker pool, pinned for one flush (release it after); null when none is deployed.
     */
    public WorkerPool acquireWorkers() {
        for (;;) {
            WorkerPool p = workers;
            if (p == null || p.acquire()) {
                return p;
            }
        }
    }

    /** Stops the channel verticles and the worker pool. */
    public Future<Void> undeploy() {
        Vertx v = vertx;
        if (v == null) {
            return Future.succeededFuture();
        }
        List<Future<?>> all = new ArrayList<>();
        synchronized (channelDeployments) {
            channelDeployments.forEach(id -> all.add(v.undeploy(id)));
            channelDeployments.clear();
        }
        WorkerPool p = workers;
        workers = null;
        if (p != null) {
            p.retire();
        }
        return Future.join(all).mapEmpty();
    }

    /** True when {@code next} differs from the current config in its live part only (or not at all). */
    public boolean liveCompatible(ReplicaConfig next) {
        return structural(next).equals(structural(config));
    }

    private static ReplicaConfig structural(ReplicaConfig c) {
        ReplicaConfig.ColoOptions o = c.coloOptions();
        return c.withGuards(ReplicaConfig.Guards.DEFAULT)
                .withColo(new ReplicaConfig.ColoOptions(o.enabled(), o.checkpointDelayMs(), 1, 1, o.maxBlob(), false, false));
    }

    /**
     * Applies a configuration that differs in its live part only: the running migration picks up
     * the new heartbeat, guards and digest setting at once; a new flush worker count deploys a new
     * pool, and the old one retires when no flush uses it.
     */
    public Future<Void> reconfigure(ReplicaConfig next) {
        if (!liveCompatible(next)) {
            throw new IllegalArgumentException("replica " + name() + ": not a live change (needs a restart): " + next);
        }
        ReplicaConfig old = config;
        config = next;
        LOG.info(() -> name() + ": live configuration applied: " + next);
        Vertx v = vertx;
        if (v == null || !next.colo() || old.coloOptions().flushWorkers() == next.coloOptions().flushWorkers()) {
            return Future.succeededFuture();
        }
        WorkerPool before = workers;
        return deployWorkers(v).map(id -> {
            if (before != null) {
                before.retire();
            }
            LOG.info(() -> name() + ": flush workers now " + next.coloOptions().flushWorkers());
            return (Void) null;
        });
    }

    /** The worker pool in use (tests, status). */
    public WorkerPool workers() {
        return workers;
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

    /** A connection refused before it joined a session (bad magic, limits, ...). */
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
