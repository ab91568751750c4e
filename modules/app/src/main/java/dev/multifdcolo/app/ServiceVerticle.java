package dev.multifdcolo.app;

import dev.multifdcolo.app.service.ControlApi;
import dev.multifdcolo.app.service.Endpoint;
import dev.multifdcolo.app.service.LogLevels;
import dev.multifdcolo.app.service.ManagedReplica;
import dev.multifdcolo.app.service.ReplicaMetrics;
import dev.multifdcolo.app.service.ServiceMetrics;
import dev.multifdcolo.secondary.ImageWriter;
import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.ReplicaConfig;
import io.micrometer.core.instrument.MeterRegistry;
import io.vertx.config.ConfigRetriever;
import io.vertx.config.ConfigRetrieverOptions;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.http.HttpServer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.logging.Logger;

/**
 * Runs the configured replicas and follows the config store: a replica added to the file is
 * started, a removed one is stopped once idle (an active migration is never cut by an edit), a
 * changed one is restarted once idle. Invalid new configuration is rejected whole; the old one
 * keeps running. Also serves the Prometheus scrape endpoint and the control API.
 *
 * <p>All state changes run on this verticle's context.
 */
public final class ServiceVerticle extends VerticleBase {
    private static final Logger LOG = Logger.getLogger(ServiceVerticle.class.getName());

    /**
     * The top-level keys of the service configuration. Unlike replica keys, unknown top-level keys
     * cannot be refused: the store merges every system property into the same object.
     */
    public static final Set<String> KEYS = Set.of("transport", "instances", "scan-period-ms", "images-dir",
            "shutdown-grace-ms", "retain-image", "metrics", "control", "log-levels", "replicas");

    private final ConfigRetrieverOptions options;
    private final String registryName;
    private ConfigRetriever retriever;
    private Context context;
    /** Replicas started (or starting / stopping), by name. */
    private final Map<String, ManagedReplica> running = new ConcurrentHashMap<>();
    private final Set<String> starting = ConcurrentHashMap.newKeySet();
    private Map<String, ReplicaConfig> wanted = new LinkedHashMap<>();
    private JsonObject current = new JsonObject();
    private volatile boolean applied;
    private volatile boolean draining;
    private final Set<Future<?>> pendingWrites = ConcurrentHashMap.newKeySet();
    private volatile String lastError;
    private MeterRegistry registry;
    private HttpServer metricsServer;
    private HttpServer controlServer;
    private Endpoint metricsEndpoint;
    private ControlApi.Settings controlSettings;
    private final LogLevels logLevels = new LogLevels();

    public ServiceVerticle(ConfigRetrieverOptions options) {
        this(options, ServiceMetrics.DEFAULT_REGISTRY);
    }

    /** @param registryName the Micrometer registry Vert.x was started with (see {@link ServiceMetrics#vertxOptions}) */
    public ServiceVerticle(ConfigRetrieverOptions options, String registryName) {
        this(options, registryName, 0);
    }

    /** @param instances channel verticle instances per replica from the command line (0: the config's {@code instances}) */
    public ServiceVerticle(ConfigRetrieverOptions options, String registryName, int instances) {
        this.options = options;
        this.registryName = registryName;
        this.instancesOverride = instances;
    }

    private final int instancesOverride;

    @Override
    public Future<?> start() {
        context = vertx.getOrCreateContext();
        registry = ServiceMetrics.registry(registryName);
        retriever = ConfigRetriever.create(vertx, options);
        retriever.listen(change -> context.runOnContext(v -> apply(change.getNewConfiguration())));
        return retriever.getConfig().compose(conf -> {
            try {
                metricsEndpoint = ServiceMetrics.endpoint(conf);
                controlSettings = ControlApi.Settings.from(conf);
            } catch (RuntimeException e) {
                return Future.failedFuture(new IllegalArgumentException("configuration rejected: " + e.getMessage(), e));
            }
            return apply(conf);
        }).compose(v -> ServiceMetrics.serve(vertx, metricsEndpoint, registry))
                .compose(s -> {
                    metricsServer = s;
                    return new ControlApi(vertx, controlSettings, this::managed, this::ready).start();
                })
                .onSuccess(s -> controlServer = s);
    }

    /**
     * Validates the whole new configuration first; only then starts/stops replicas.
     *
     * @return fails with the reason when the configuration was rejected
     */
    Future<Void> apply(JsonObject conf) {
        Map<String, ReplicaConfig> next = new LinkedHashMap<>();
        Map<String, java.util.logging.Level> levels;
        try {
            levels = LogLevels.parse(conf.getJsonObject("log-levels"));
            JsonArray list = conf.getJsonArray("replicas", new JsonArray());
            Map<String, String> ports = new HashMap<>();
            for (int i = 0; i < list.size(); i++) {
                ReplicaConfig rc = ReplicaConfig.fromJson(list.getJsonObject(i));
                if (rc.tls() != null) {
                    try {
                        rc.tls().serverContext(vertx);   // a bad PEM / keystore / password rejects the file, with the reason
                    } catch (IllegalArgumentException e) {
                        throw new IllegalArgumentException("replica " + rc.name() + ": " + e.getMessage(), e);
                    }
                }
                if (next.put(rc.name(), rc) != null) {
                    throw new IllegalArgumentException("replica name '" + rc.name() + "' used twice");
                }
                String hp = rc.host() + ":" + rc.port();
                if (rc.port() != 0 && ports.put(hp, rc.name()) != null) {
                    throw new IllegalArgumentException("replicas '" + ports.get(hp) + "' and '" + rc.name()
                            + "' both listen on " + hp);
                }
            }
            if (conf.getInteger("instances", 0) < 0) {
                throw new IllegalArgumentException("instances must be >= 0");
            }
            Endpoint m = ServiceMetrics.endpoint(conf);
            ControlApi.Settings c = ControlApi.Settings.from(conf);
            if (metricsEndpoint != null && !m.equals(metricsEndpoint)) {
                moveMetrics(m);
            }
            if (controlSettings != null && !c.equals(controlSettings)) {
                moveControl(c);
            }
            if (!Objects.equals(current.getString("transport"), conf.getString("transport")) && applied) {
                LOG.warning("transport change needs a restart");
            }
        } catch (RuntimeException e) {
            lastError = e.getMessage();
            LOG.severe("configuration rejected, keeping the previous one: " + e.getMessage());
            return Future.failedFuture(e);
        }
        lastError = null;
        logLevels.apply(levels);
        current = conf;
        wanted = next;
        return reconcile().onComplete(ar -> applied = true);
    }

    /**
     * A new metrics section applies live: the scrape endpoint is closed and opened again with the
     * new settings (enabled, host, port). If the new one cannot be opened, the old settings are
     * tried again and the failure is logged.
     */
    private void moveMetrics(Endpoint next) {
        Endpoint before = metricsEndpoint;
        metricsEndpoint = next;
        HttpServer old = metricsServer;
        metricsServer = null;
        (old == null ? Future.succeededFuture() : old.close())
                .compose(v -> ServiceMetrics.serve(vertx, next, registry))
                .onSuccess(srv -> {
                    metricsServer = srv;
                    LOG.info("metrics endpoint now " + next);
                })
                .onFailure(e -> {
                    LOG.severe("metrics endpoint " + next + " cannot start (" + e.getMessage() + "); back to " + before);
                    metricsEndpoint = before;
                    ServiceMetrics.serve(vertx, before, registry).onSuccess(srv -> metricsServer = srv);
                });
    }

    /** As {@link #moveMetrics} for the control API (enabled, host, port, token). */
    private void moveControl(ControlApi.Settings next) {
        ControlApi.Settings before = controlSettings;
        controlSettings = next;
        HttpServer old = controlServer;
        controlServer = null;
        (old == null ? Future.succeededFuture() : old.close())
                .compose(v -> new ControlApi(vertx, next, this::managed, this::ready).start())
                .onSuccess(srv -> {
                    controlServer = srv;
                    LOG.info("control API now " + next.endpoint());
                })
                .onFailure(e -> {
                    LOG.severe("control API " + next.endpoint() + " cannot start (" + e.getMessage() + "); back to "
                            + before.endpoint());
                    controlSettings = before;
                    new ControlApi(vertx, before, this::managed, this::ready).start().onSuccess(srv -> controlServer = srv);
                });
    }

    /** Brings the running replicas to {@link #wanted}; called on each new config and after each stop. */
    private Future<Void> reconcile() {
        List<Future<?>> all = new ArrayList<>();
        for (ManagedReplica m : List.copyOf(running.values())) {
            ReplicaConfig w = wanted.get(m.name());
            if (!m.stopping() && w != null && !w.equals(m.config()) && m.replica().liveCompatible(w)) {
                // heartbeat, flush workers, guards, digest: applied to the running replica, even mid-migration
                m.replica().reconfigure(w).onFailure(e -> LOG.warning(m.name() + ": live change not applied: " + e.getMessage()));
                continue;
            }
            if (!m.stopping() && (w == null || !w.equals(m.config()))) {
                m.markStopping();
                stopWhenIdle(m).onComplete(ar -> context.runOnContext(v -> {
                    running.remove(m.name(), m);
                    reconcile();
                }));
            }
        }
        for (ReplicaConfig w : wanted.values()) {
            if (!running.containsKey(w.name()) && starting.add(w.name())) {
                all.add(startReplica(w).onComplete(ar -> starting.remove(w.name())));
            }
        }
        return Future.join(all).mapEmpty();
    }

    private Future<Void> stopWhenIdle(ManagedReplica m) {
        IncomingMigration s = m.replica().current();
        if (s != null && !s.finished()) {
            LOG.info(m.name() + ": stop deferred until its migration ends");
            return s.outcome().transform(ar -> stopWhenIdle(m));
        }
        return m.replica().undeploy()
                .transform(ar -> {
                    m.close();
                    LOG.info(m.name() + ": stopped");
                    return Future.<Void>succeededFuture();
                });
    }

    private Future<Void> startReplica(ReplicaConfig cfg) {
        ManagedReplica m = new ManagedReplica(cfg);
        int instances = instancesOverride > 0 ? instancesOverride : current.getInteger("instances", 0);
        int n = instances > 0 ? instances : Runtime.getRuntime().availableProcessors();
        String imagesDir = current.getString("images-dir");
        boolean retain = current.getBoolean("retain-image", true);
        ReplicaMetrics metrics = registry == null ? null : new ReplicaMetrics(registry, m.replica());
        m.metrics(metrics);
        m.replica().onSessionStart(s -> {
            if (metrics != null) {
                metrics.onSession(s);
            }
            // registered now, so a drain that sees the session end also waits for its image write
            io.vertx.core.Promise<Void> written = io.vertx.core.Promise.promise();
            Future<Void> wf = written.future();
            pendingWrites.add(wf);
            wf.onComplete(x -> pendingWrites.remove(wf));
            s.outcome().onComplete(out -> {
                if (out.failed()) {
                    written.complete();
                    return;
                }
                MigrationResult res = out.result();
                m.completed(res, retain);
                if (imagesDir != null) {
                    // pinned while written, so a newer result cannot release it underneath
                    ManagedReplica.Held h = retain ? m.acquire() : null;
                    Path dir = Path.of(imagesDir, cfg.name());
                    vertx.executeBlocking(() -> ImageWriter.write(res, dir), false).onComplete(ar -> {
                        if (h != null) {
                            m.release(h);
                        } else {
                            res.memory().close();
                        }
                        LOG.info(cfg.name() + ": image " + (ar.succeeded() ? "written to " + dir
                                : "not written: " + ar.cause()));
                        written.complete();
                    });
                } else {
                    if (!retain) {
                        res.memory().close();
                    }
                    written.complete();
                }
            });
        });
        running.put(cfg.name(), m);
        return m.replica().deploy(vertx, n)
                .onSuccess(ids -> {
                    m.started();
                    LOG.info("started " + cfg + " on " + n + " event loop(s)");
                })
                .onFailure(e -> {
                    LOG.severe(cfg.name() + ": cannot start: " + e.getMessage());
                    running.remove(cfg.name(), m);
                    m.close();
                })
                .mapEmpty();
    }

    /** The replicas the service runs now (including ones waiting to stop). */
    public Map<String, ManagedReplica> managed() {
        Map<String, ManagedReplica> m = new LinkedHashMap<>();
        wanted.keySet().forEach(k -> {
            ManagedReplica r = running.get(k);
            if (r != null) {
                m.put(k, r);
            }
        });
        running.forEach(m::putIfAbsent);
        return m;
    }

    public Map<String, dev.multifdcolo.secondary.Replica> replicas() {
        Map<String, dev.multifdcolo.secondary.Replica> m = new LinkedHashMap<>();
        managed().forEach((k, v) -> m.put(k, v.replica()));
        return m;
    }

    /**
     * Graceful stop (SIGTERM): stops following the config, fails every replica in COLO state over
     * to its last committed checkpoint (a checkpoint being flushed is finished first, §9.9), gives
     * the other running migrations up to {@code graceMs} to end, and waits for the image writes
     * they started. New connections are refused from the start of the drain.
     */
    public Future<Void> drain(long graceMs) {
        io.vertx.core.Promise<Void> done = io.vertx.core.Promise.promise();
        context.runOnContext(v -> {
            draining = true;
            // stop accepting: from now on every new connection is refused at once
            running.values().forEach(m -> m.replica().stopAccepting());
            if (retriever != null) {
                retriever.close();
                retriever = null;
            }
            List<Future<?>> ends = new ArrayList<>();
            for (ManagedReplica m : running.values()) {
                IncomingMigration s = m.replica().current();
                if (s == null || s.finished()) {
                    continue;
                }
                if (s.phase() == IncomingMigration.Phase.COLO) {
                    LOG.warning(m.name() + ": service stopping: failing over at epoch " + s.epoch());
                    s.failover("service shutting down");
                } else {
                    LOG.warning(m.name() + ": service stopping: waiting up to " + graceMs + " ms for its "
                            + s.phase() + " migration");
                }
                ends.add(s.outcome());
            }
            io.vertx.core.Promise<Void> sessions = io.vertx.core.Promise.promise();
            long timer = vertx.setTimer(Math.max(1, graceMs), t -> {
                if (sessions.tryComplete()) {
                    LOG.warning("shutdown grace of " + graceMs + " ms over; unfinished migrations are cut");
                }
            });
            Future.join(ends).onComplete(ar -> {
                vertx.cancelTimer(timer);
                sessions.tryComplete();
            });
            sessions.future().onComplete(x -> {
                // image writes of the sessions that ended (a session that started meanwhile and
                // never ends must not hold the stop forever: bounded by the same grace)
                long w = vertx.setTimer(Math.max(1, graceMs), t -> {
                    if (done.tryComplete()) {
                        LOG.warning("shutdown: image writes still running after " + graceMs + " ms");
                    }
                });
                Future.join(List.copyOf(pendingWrites)).onComplete(ar -> {
                    vertx.cancelTimer(w);
                    done.tryComplete();
                });
            });
        });
        return done.future();
    }

    public boolean draining() {
        return draining;
    }

    /** Ready: configuration applied, every wanted replica listening. */
    public boolean ready() {
        if (draining || !applied) {
            return false;
        }
        for (String name : wanted.keySet()) {
            ManagedReplica r = running.get(name);
            if (r == null || !r.listening() || r.stopping()) {
                return false;
            }
        }
        return true;
    }

    /** Why the last configuration change was rejected (null when it was applied). */
    public String lastError() {
        return lastError;
    }

    /** Actual port of the Prometheus endpoint, -1 when disabled. */
    public int metricsPort() {
        return metricsServer == null ? -1 : metricsServer.actualPort();
    }

    /** Actual port of the control API, -1 when disabled. */
    public int controlPort() {
        return controlServer == null ? -1 : controlServer.actualPort();
    }

    @Override
    public Future<?> stop() {
        if (retriever != null) {
            retriever.close();
        }
        running.values().forEach(ManagedReplica::close);
        return Future.succeededFuture();
    }
}
