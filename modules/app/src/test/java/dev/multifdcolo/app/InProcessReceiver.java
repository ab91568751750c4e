package dev.multifdcolo.app;

import dev.multifdcolo.secondary.ChannelVerticle;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;

import java.io.IOException;
import java.net.ServerSocket;
import java.util.concurrent.TimeUnit;

/** Our receiver inside the test JVM, on real sockets and the io_uring transport when available. */
final class InProcessReceiver implements AutoCloseable {
    final Vertx vertx;
    final Replica replica;
    final int port;

    InProcessReceiver(ReplicaConfig cfg, int instances) throws IOException {
        vertx = Transports.vertx("auto", new VertxOptions().setEventLoopPoolSize(Math.max(2, instances))
                .setMaxEventLoopExecuteTime(500).setMaxEventLoopExecuteTimeUnit(TimeUnit.MILLISECONDS));
        port = cfg.port() == 0 ? freePort() : cfg.port();
        replica = new Replica(cfg.withPort(port));
        vertx.deployVerticle(() -> new ChannelVerticle(replica), new DeploymentOptions().setInstances(instances)).await();
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    Future<MigrationResult> next() {
        return replica.nextMigration();
    }

    String uri() {
        return "tcp:127.0.0.1:" + port;
    }

    @Override
    public void close() {
        vertx.close().await();
    }
}
