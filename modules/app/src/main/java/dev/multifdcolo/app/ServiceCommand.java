package dev.multifdcolo.app;

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
        Vertx vertx = Transports.vertx(first.getString("transport", "auto"), new VertxOptions());
        ServiceVerticle service = new ServiceVerticle(retrieverOptions(conf, first.getLong("scan-period-ms", 2000L)));
        vertx.deployVerticle(service).await();
        LOG.info("service running from " + conf.toAbsolutePath());
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            vertx.close().toCompletionStage().toCompletableFuture().join();
            stop.countDown();
        }, "shutdown"));
        stop.await();
        return 0;
    }

    static ConfigRetrieverOptions retrieverOptions(Path conf, long scanMs) {
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
