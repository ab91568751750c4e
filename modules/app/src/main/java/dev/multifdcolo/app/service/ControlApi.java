package dev.multifdcolo.app.service;

import dev.multifdcolo.secondary.ImageWriter;
import dev.multifdcolo.secondary.IncomingMigration;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Map;
import java.util.Set;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.logging.Logger;

/**
 * The control API (HTTP/JSON, Vert.x core): loopback by default; a Bearer token is required when
 * one is configured ({@code control.token} or the environment variable
 * {@value #TOKEN_ENV}), and the API refuses to start bound elsewhere than loopback without one.
 *
 * <pre>
 * GET  /health                       200 while the service runs
 * GET  /ready                        200 once the configuration is applied and every replica listens, else 503
 * GET  /replicas                     status of every replica
 * GET  /replicas/{name}              status of one
 * POST /replicas/{name}/failover     manual failover of a replica in COLO state (?reason=...)
 * POST /replicas/{name}/image?dir=D  writes the replica's held image (last completed or failed-over migration)
 * POST /replicas/{name}/reset        after a failover (after-failover: refuse): accept the next migration
 * </pre>
 */
public final class ControlApi {
    private static final Logger LOG = Logger.getLogger(ControlApi.class.getName());
    public static final String TOKEN_ENV = "MULTIFD_COLO_TOKEN";
    public static final int DEFAULT_PORT = 9465;

    /** The {@code control} section: endpoint and token. */
    public record Settings(Endpoint endpoint, String token) {
        public static Settings from(JsonObject conf) {
            JsonObject j = conf.getJsonObject("control");
            Endpoint ep = Endpoint.from(j, "control", DEFAULT_PORT, Set.of("token"));
            String token = j == null ? null : j.getString("token");
            if (token == null || token.isBlank()) {
                token = System.getenv(TOKEN_ENV);
            }
            if (token != null && token.isBlank()) {
                token = null;
            }
            if (ep.enabled() && !ep.loopback() && token == null) {
                throw new IllegalArgumentException("control API bound to " + ep.host()
                        + " needs a token (control.token or " + TOKEN_ENV + ")");
            }
            return new Settings(ep, token);
        }

        @Override
        public String toString() {
            return "control " + endpoint + (token == null ? "" : " token=***");
        }
    }

    private final Vertx vertx;
    private final Settings settings;
    private final Supplier<Map<String, ManagedReplica>> replicas;
    private final BooleanSupplier ready;

    public ControlApi(Vertx vertx, Settings settings, Supplier<Map<String, ManagedReplica>> replicas,
                      BooleanSupplier ready) {
        this.vertx = vertx;
        this.settings = settings;
        this.replicas = replicas;
        this.ready = ready;
    }

    public Future<HttpServer> start() {
        Endpoint ep = settings.endpoint();
        if (!ep.enabled()) {
            return Future.succeededFuture(null);
        }
        return vertx.createHttpServer().requestHandler(this::handle).listen(ep.port(), ep.host())
                .onSuccess(s -> LOG.info("control API on http://" + ep.host() + ":" + s.actualPort()
                        + (settings.token() == null ? "" : " (Bearer token required)")));
    }

    private boolean authorized(HttpServerRequest req) {
        if (settings.token() == null) {
            return true;
        }
        String h = req.getHeader("Authorization");
        String expected = "Bearer " + settings.token();
        return h != null && MessageDigest.isEqual(h.getBytes(StandardCharsets.UTF_8),
                expected.getBytes(StandardCharsets.UTF_8));
    }

    private void handle(HttpServerRequest req) {
        String path = req.path();
        if (!authorized(req)) {
            req.response().putHeader("WWW-Authenticate", "Bearer");
            json(req, 401, new JsonObject().put("error", "unauthorized"));
            return;
        }
        String[] parts = path.replaceAll("/+$", "").split("/");
        boolean get = req.method() == HttpMethod.GET;
        boolean post = req.method() == HttpMethod.POST;
        if (path.equals("/health") && get) {
            json(req, 200, new JsonObject().put("status", "UP"));
        } else if (path.equals("/ready") && get) {
            boolean ok = ready.getAsBoolean();
            json(req, ok ? 200 : 503, new JsonObject().put("status", ok ? "READY" : "NOT_READY"));
        } else if (parts.length == 2 && parts[1].equals("replicas") && get) {
            JsonArray a = new JsonArray();
            replicas.get().values().forEach(r -> a.add(r.status()));
            json(req, 200, new JsonObject().put("replicas", a));
        } else if (parts.length >= 3 && parts[1].equals("replicas")) {
            ManagedReplica r = replicas.get().get(parts[2]);
            if (r == null) {
                json(req, 404, new JsonObject().put("error", "no replica '" + parts[2] + "'"));
            } else if (parts.length == 3 && get) {
                json(req, 200, r.status());
            } else if (parts.length == 4 && parts[3].equals("failover") && post) {
                failover(req, r);
            } else if (parts.length == 4 && parts[3].equals("image") && post) {
                image(req, r);
            } else if (parts.length == 4 && parts[3].equals("reset") && post) {
                String was = r.replica().refusing();
                boolean files = r.config().backing() instanceof dev.multifdcolo.memory.Backing.Files;
                if (was != null && files && !r.dropHeldForReset()) {
                    json(req, 409, new JsonObject().put("error", r.name() + ": its image is being written; reset after that"));
                } else if (!r.replica().reset()) {
                    json(req, 409, new JsonObject().put("error", r.name() + " is not refusing migrations"));
                } else {
                    LOG.warning(r.name() + ": reset through the control API (" + was + "); the next migration replaces"
                            + (files ? " the image in its backing-dir (the held image was released)" : " the held image"));
                    json(req, 200, r.status());
                }
            } else {
                json(req, 405, new JsonObject().put("error", req.method() + " " + path + " not supported"));
            }
        } else {
            json(req, 404, new JsonObject().put("error", "unknown endpoint " + req.method() + " " + path));
        }
    }

    private void failover(HttpServerRequest req, ManagedReplica r) {
        IncomingMigration s = r.replica().current();
        if (s == null || s.finished() || s.phase() != IncomingMigration.Phase.COLO) {
            json(req, 409, new JsonObject().put("error", r.name() + " is not in COLO state")
                    .put("phase", s == null || s.finished() ? ReplicaMetrics.IDLE : s.phase().name()));
            return;
        }
        String reason = req.getParam("reason", "operator request (control API)");
        LOG.warning(r.name() + ": failover requested through the control API: " + reason);
        s.failover(reason);
        s.outcome().onComplete(ar -> json(req, ar.succeeded() ? 200 : 500, r.status()));
    }

    private void image(HttpServerRequest req, ManagedReplica r) {
        String dir = req.getParam("dir");
        if (dir == null || dir.isBlank()) {
            json(req, 400, new JsonObject().put("error", "dir parameter required"));
            return;
        }
        ManagedReplica.Held h = r.acquire();
        if (h == null) {
            json(req, 404, new JsonObject().put("error", r.name() + " holds no completed or failed-over image"));
            return;
        }
        vertx.executeBlocking(() -> ImageWriter.write(h.result(), Path.of(dir)), false).onComplete(ar -> {
            r.release(h);
            if (ar.succeeded()) {
                LOG.info(r.name() + ": image written to " + dir + " (control API)");
                json(req, 200, ar.result().put("dir", Path.of(dir).toAbsolutePath().toString()));
            } else {
                json(req, 500, new JsonObject().put("error", "cannot write the image: " + ar.cause().getMessage()));
            }
        });
    }

    private static void json(HttpServerRequest req, int status, JsonObject body) {
        req.response().setStatusCode(status).putHeader("content-type", "application/json").end(body.encodePrettily());
    }
}
