package dev.multifdcolo.app;

import dev.multifdcolo.app.service.ServiceMetrics;
import io.vertx.config.ConfigRetriever;
import io.vertx.config.ConfigRetrieverOptions;
import io.vertx.config.ConfigStoreOptions;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.json.JsonObject;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.logging.Logger;

/** {@code run} (the default): the long-running service, replicas from the config store. */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = "Run the service: one listener per replica from the configuration (default conf/multifd-colo.yaml).")
public final class ServiceCommand implements Callable<Integer> {
    private static final Logger LOG = Logger.getLogger(ServiceCommand.class.getName());

    @Option(names = {"-conf", "--conf"}, defaultValue = "conf/multifd-colo.yaml", description = "config file (YAML or JSON)")
    Path conf;

    @Option(names = {"-instances", "--instances"}, defaultValue = "0",
            description = "channel verticle instances per replica (overrides the config's instances; 0 = config, whose 0 = one per core)")
    int instances;

    @Override
    public Integer call() throws Exception {
        if (!Files.exists(conf)) {
            System.err.println("error: config file " + conf.toAbsolutePath() + " not found (use --conf)");
            return 2;
        }
        // The transport must be chosen before Vert.x starts: read the file once, outside Vert.x.
        Vertx boot = Vertx.vertx();
        JsonObject first;
        try {
            first = ConfigRetriever.create(boot, retrieverOptions(conf, 0)).getConfig().await();
        } finally {
            boot.close().await();
        }
        Vertx vertx = Transports.vertx(first.getString("transport", "auto"),
                ServiceMetrics.vertxOptions(new VertxOptions(), first, ServiceMetrics.DEFAULT_REGISTRY));
        if (instances < 0) {
            System.err.println("error: --instances must be >= 0");
            return 2;
        }
        ServiceVerticle service = new ServiceVerticle(retrieverOptions(conf, first.getLong("scan-period-ms", 2000L)),
                ServiceMetrics.DEFAULT_REGISTRY, instances);
        vertx.deployVerticle(service).await();
        LOG.info("service running from " + conf.toAbsolutePath());
        long grace = first.getLong("shutdown-grace-ms", 30_000L);
        CountDownLatch stop = new CountDownLatch(1);
        java.util.concurrent.atomic.AtomicBoolean once = new java.util.concurrent.atomic.AtomicBoolean();
        Runnable shutdown = () -> {
            if (!once.compareAndSet(false, true)) {
                return;
            }
            LOG.info("stopping: draining replicas (grace " + grace + " ms)");
            try {
                service.drain(grace).toCompletionStage().toCompletableFuture()
                        .get(grace + 30_000, java.util.concurrent.TimeUnit.MILLISECONDS);
            } catch (Exception e) {
                LOG.warning("drain did not finish: " + e);
            }
            vertx.close().toCompletionStage().toCompletableFuture().join();
            LOG.info("stopped");
            flushLogs();
            stop.countDown();
        };
        // SIGTERM/SIGINT drain before the JVM starts shutting down (its hooks would reset logging
        // concurrently); the shutdown hook covers every other way out.
        for (String sig : new String[]{"TERM", "INT"}) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> new Thread(shutdown, "shutdown-" + sig).start());
            } catch (IllegalArgumentException e) {
                LOG.fine("cannot handle SIG" + sig + ": " + e.getMessage());
            }
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            shutdown.run();
            try {
                stop.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "shutdown"));
        stop.await();
        return 0;
    }

    private static void flushLogs() {
        for (java.util.logging.Handler h : Logger.getLogger("").getHandlers()) {
            h.flush();
        }
        System.err.flush();
        System.out.flush();
    }

    /** File store ({@code .yaml}/{@code .yml} or JSON) plus system properties, scanned every {@code scanMs}. */
    public static ConfigRetrieverOptions retrieverOptions(Path conf, long scanMs) {
        String name = conf.getFileName().toString();
        String format = name.endsWith(".yaml") || name.endsWith(".yml") ? "yaml" : "json";
        ConfigRetrieverOptions o = new ConfigRetrieverOptions()
                .addStore(new ConfigStoreOptions().setType("file").setFormat(format)
                        .setConfig(new JsonObject().put("path", conf.toAbsolutePath().toString())))
                .addStore(new ConfigStoreOptions().setType("sys").setConfig(new JsonObject().put("cache", false)));
        if (scanMs > 0) {
            o.setScanPeriod(scanMs);
        }
        return o;
    }
}
