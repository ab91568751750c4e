package dev.multifdcolo.app;

import dev.multifdcolo.secondary.ChannelVerticle;
import dev.multifdcolo.secondary.ImageWriter;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import io.vertx.config.ConfigRetriever;
import io.vertx.config.ConfigRetrieverOptions;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.logging.Logger;

/**
 * Deploys one {@link ChannelVerticle} group per configured replica and follows the config store:
 * a replica added to the file is started, a removed one is stopped once idle, a changed one is
 * restarted once idle. Invalid new configuration is rejected whole; the old one keeps running.
 */
public final class ServiceVerticle extends VerticleBase {
    private static final Logger LOG = Logger.getLogger(ServiceVerticle.class.getName());

    private final ConfigRetrieverOptions options;
    private ConfigRetriever retriever;
    private final Map<String, Running> running = new HashMap<>();
    private JsonObject current = new JsonObject();

    record Running(ReplicaConfig config, Replica replica, String deploymentId) {}

    public ServiceVerticle(ConfigRetrieverOptions options) {
        this.options = options;
    }

    @Override
    public Future<?> start() {
        retriever = ConfigRetriever.create(vertx, options);
        retriever.listen(change -> apply(change.getNewConfiguration()));
        return retriever.getConfig().compose(this::apply);
    }

    /** Validates the whole new configuration first; only then starts/stops replicas. */
    Future<Void> apply(JsonObject conf) {
        Map<String, ReplicaConfig> wanted = new LinkedHashMap<>();
        try {
            JsonArray list = conf.getJsonArray("replicas", new JsonArray());
            for (int i = 0; i < list.size(); i++) {
                ReplicaConfig rc = ReplicaConfig.fromJson(list.getJsonObject(i));
                if (wanted.put(rc.name(), rc) != null) {
                    throw new IllegalArgumentException("replica name '" + rc.name() + "' used twice");
                }
            }
        } catch (RuntimeException e) {
            LOG.severe("configuration rejected, keeping the previous one: " + e.getMessage());
            return Future.failedFuture(e);
        }
        current = conf;
        Future<Void> all = Future.succeededFuture();
        for (Running r : Map.copyOf(running).values()) {
            ReplicaConfig w = wanted.get(r.config().name());
            if (w == null || !w.equals(r.config())) {
                all = all.compose(v -> stop(r));
            }
        }
        for (ReplicaConfig w : wanted.values()) {
            Running r = running.get(w.name());
            if (r == null || !r.config().equals(w)) {
                all = all.compose(v -> startReplica(w));
            }
        }
        return all;
    }

    private Future<Void> stop(Running r) {
        var s = r.replica().current();
        if (s != null && !s.finished()) {
            LOG.info(r.config().name() + ": removal deferred until its migration ends");
            return s.outcome().transform(ar -> stop(r));
        }
        running.remove(r.config().name());
        return vertx.undeploy(r.deploymentId()).onSuccess(v -> LOG.info(r.config().name() + ": stopped"));
    }

    private Future<Void> startReplica(ReplicaConfig cfg) {
        Replica replica = new Replica(cfg);
        int instances = current.getInteger("instances", 0);
        int n = instances > 0 ? instances : Runtime.getRuntime().availableProcessors();
        String imagesDir = current.getString("images-dir");
        replica.onSessionStart(s -> s.outcome().onSuccess(res -> {
            if (imagesDir != null) {
                vertx.executeBlocking(() -> ImageWriter.write(res, Path.of(imagesDir, cfg.name())))
                        .onComplete(ar -> {
                            res.memory().close();
                            LOG.info(cfg.name() + ": image " + (ar.succeeded() ? "written to " + Path.of(imagesDir, cfg.name())
                                    : "not written: " + ar.cause()));
                        });
            } else {
                res.memory().close();
            }
        }));
        return vertx.deployVerticle(() -> new ChannelVerticle(replica), new DeploymentOptions().setInstances(n))
                .onSuccess(id -> {
                    running.put(cfg.name(), new Running(cfg, replica, id));
                    LOG.info("started " + cfg + " on " + n + " event loop(s)");
                })
                .onFailure(e -> LOG.severe(cfg.name() + ": cannot start: " + e.getMessage()))
                .mapEmpty();
    }

    public Map<String, Replica> replicas() {
        Map<String, Replica> m = new LinkedHashMap<>();
        running.forEach((k, v) -> m.put(k, v.replica()));
        return m;
    }

    @Override
    public Future<?> stop() {
        if (retriever != null) {
            retriever.close();
        }
        return Future.succeededFuture();
    }
}
