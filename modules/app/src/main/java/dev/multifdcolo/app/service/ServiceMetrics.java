package dev.multifdcolo.app.service;

import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.http.HttpServer;
import io.vertx.core.json.JsonObject;
import io.vertx.micrometer.MicrometerMetricsOptions;
import io.vertx.micrometer.VertxPrometheusOptions;
import io.vertx.micrometer.backends.BackendRegistries;

import java.util.Set;
import java.util.logging.Logger;

/**
 * Metrics of the service: Vert.x Micrometer with a Prometheus registry (Vert.x, JVM and the
 * replicas' own series, see {@link ReplicaMetrics}), scraped at {@code GET /metrics} of a small
 * HTTP server on loopback by default ({@code metrics: {enabled, host, port}}).
 */
public final class ServiceMetrics {
    private static final Logger LOG = Logger.getLogger(ServiceMetrics.class.getName());
    public static final int DEFAULT_PORT = 9464;
    public static final String DEFAULT_REGISTRY = "multifd-colo";

    private ServiceMetrics() {}

    /** The {@code metrics} section of the config (validated). */
    public static Endpoint endpoint(JsonObject conf) {
        return Endpoint.from(conf.getJsonObject("metrics"), "metrics", DEFAULT_PORT, Set.of());
    }

    /**
     * Vert.x options with Micrometer metrics on (when the config enables them): Prometheus
     * backend under {@code registryName}, JVM metrics included. Must be set before Vert.x starts.
     */
    public static VertxOptions vertxOptions(VertxOptions base, JsonObject conf, String registryName) {
        if (endpoint(conf).enabled()) {
            base.setMetricsOptions(new MicrometerMetricsOptions().setEnabled(true).setJvmMetricsEnabled(true)
                    .setRegistryName(registryName)
                    .setPrometheusOptions(new VertxPrometheusOptions().setEnabled(true)));
        }
        return base;
    }

    /** The registry Vert.x created for {@code registryName}, or null when metrics are off. */
    public static MeterRegistry registry(String registryName) {
        return BackendRegistries.getNow(registryName);
    }

    /** Starts the scrape endpoint; completes with the server (null when disabled or no registry). */
    public static Future<HttpServer> serve(Vertx vertx, Endpoint ep, MeterRegistry registry) {
        if (!ep.enabled() || !(registry instanceof PrometheusMeterRegistry prom)) {
            if (ep.enabled()) {
                LOG.warning("metrics enabled in the config but Vert.x was started without the Prometheus registry");
            }
            return Future.succeededFuture(null);
        }
        if (!ep.loopback()) {
            LOG.warning("metrics endpoint bound to " + ep.host() + ", reachable from other hosts");
        }
        return vertx.createHttpServer().requestHandler(req -> {
            if (!req.path().equals("/metrics")) {
                req.response().setStatusCode(404).end("try /metrics\n");
                return;
            }
            vertx.executeBlocking(prom::scrape, false).onComplete(ar -> {
                if (ar.succeeded()) {
                    req.response().putHeader("content-type", "text/plain; version=0.0.4; charset=utf-8").end(ar.result());
                } else {
                    req.response().setStatusCode(500).end(String.valueOf(ar.cause()));
                }
            });
        }).listen(ep.port(), ep.host()).onSuccess(s -> LOG.info("metrics on http://" + ep.host() + ":" + s.actualPort()
                + "/metrics"));
    }
}
