package dev.multifdcolo.app.service;

import dev.multifdcolo.app.ServiceCommand;
import dev.multifdcolo.app.ServiceVerticle;
import dev.multifdcolo.app.Transports;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;

/** The service in the test JVM, from a config file the test edits; HTTP helpers for its endpoints. */
final class ServiceRig implements AutoCloseable {
    private static final AtomicLong IDS = new AtomicLong();
    final Path file;
    final Vertx vertx;
    final ServiceVerticle service;
    final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    ServiceRig(Path file, JsonObject conf) throws Exception {
        this.file = file;
        write(conf);
        String registry = "test-" + IDS.incrementAndGet();
        vertx = Transports.vertx("auto", ServiceMetrics.vertxOptions(new VertxOptions().setEventLoopPoolSize(4)
                .setMaxEventLoopExecuteTime(500).setMaxEventLoopExecuteTimeUnit(TimeUnit.MILLISECONDS), conf, registry));
        service = new ServiceVerticle(ServiceCommand.retrieverOptions(file, conf.getLong("scan-period-ms", 200L)),
                registry);
        try {
            vertx.deployVerticle(service).await();
        } catch (RuntimeException e) {
            vertx.close().await();
            throw e;
        }
    }

    /** Replaces the file atomically (the store never reads half a file). */
    void write(JsonObject conf) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.writeString(tmp, conf.encodePrettily());
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    static JsonObject config(int scanMs, JsonObject... replicas) {
        return new JsonObject().put("transport", "auto").put("instances", 2).put("scan-period-ms", scanMs)
                .put("metrics", new JsonObject().put("host", "127.0.0.1").put("port", 0))
                .put("control", new JsonObject().put("host", "127.0.0.1").put("port", 0))
                .put("replicas", new JsonArray(java.util.List.of((Object[]) replicas)));
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    static void await(String what, long ms, BooleanSupplier cond) throws InterruptedException {
        long end = System.nanoTime() + ms * 1_000_000;
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(20);
        }
    }

    HttpResponse<String> get(int port, String path, String token) throws Exception {
        return send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).GET(), token);
    }

    HttpResponse<String> post(int port, String path, String token) throws Exception {
        return send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                .POST(HttpRequest.BodyPublishers.noBody()), token);
    }

    private HttpResponse<String> send(HttpRequest.Builder b, String token) throws Exception {
        if (token != null) {
            b.header("Authorization", "Bearer " + token);
        }
        return http.send(b.timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
    }

    @Override
    public void close() {
        vertx.close().await();
    }
}
