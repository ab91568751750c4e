package dev.multifdcolo.app.cli;

import dev.multifdcolo.app.Transports;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.MigrationSender;
import dev.multifdcolo.primary.SendStats;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.Sizes;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.net.ServerSocket;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/**
 * {@code demo}: the main job on a default that needs nothing else. Starts a receiver replica in
 * this process, migrates a generated image to it over loopback with our QEMU-compatible sender in
 * every framing (plain, multifd 4, multifd 4 + zstd; QEMU 7.2 and 11.1 style), and checks that
 * the received image is byte-identical (SHA-256).
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Self-contained run: sender -> receiver on loopback, several framings, digests compared.")
public final class DemoCommand implements Callable<Integer> {

    @Option(names = "--ram", defaultValue = "256M", description = "guest RAM to migrate (${DEFAULT-VALUE})")
    String ram;

    @Option(names = "--transport", defaultValue = "auto", description = "auto, io_uring, epoll or nio")
    String transport;

    record Case(String name, Framing framing, int channels, Compression compression) {}

    @Override
    public Integer call() throws Exception {
        long size = Sizes.parse(ram);
        List<Case> cases = List.of(
                new Case("plain (QEMU 11.1 framing)", Framing.MODERN, 0, Compression.NONE),
                new Case("multifd 4 (QEMU 7.2 framing)", Framing.LEGACY, 4, Compression.NONE),
                new Case("multifd 4 (QEMU 11.1 framing)", Framing.MODERN, 4, Compression.NONE),
                new Case("multifd 4 zstd (QEMU 11.1 framing)", Framing.MODERN, 4, Compression.ZSTD));
        Vertx vertx = Transports.vertx(transport, new VertxOptions());
        int failures = 0;
        try (GuestMemory image = GuestImages.generate(size, 42, 0.25)) {
            String want = image.digest();
            System.out.printf("generated %d MiB of mixed pages, SHA-256 %s%n", size >> 20, want.substring(0, 16));
            for (Case c : cases) {
                int port;
                try (ServerSocket s = new ServerSocket(0)) {
                    port = s.getLocalPort();
                }
                Replica replica = new Replica(ReplicaConfig.defaults("demo", "127.0.0.1", port)
                        .withMultifd(c.channels()).withCompression(c.compression()));
                List<String> ids = replica.deploy(vertx, Runtime.getRuntime().availableProcessors()).await();
                var next = replica.nextMigration();
                SendStats sent;
                try (MigrationSender sender = MigrationSender.connect(SenderConfig.builder("127.0.0.1", port)
                        .framing(c.framing()).multifd(c.channels()).compression(c.compression()).build(), image)) {
                    sent = sender.migrate();
                }
                MigrationResult res = next.toCompletionStage().toCompletableFuture().get(120, TimeUnit.SECONDS);
                String got = res.memory().digest();
                boolean ok = got.equals(want);
                failures += ok ? 0 : 1;
                System.out.printf("%-36s %s  %7.1f MiB on the wire  %6.0f MiB/s guest RAM  image %s%n", c.name(),
                        ok ? "OK " : "BAD", sent.totalBytes() / 1048576.0, (size / 1048576.0) / res.stats().seconds(),
                        ok ? "identical" : "DIFFERS (" + got.substring(0, 16) + ")");
                res.memory().close();
                for (String id : ids) {
                    vertx.undeploy(id).await();
                }
            }
        } finally {
            vertx.close().await();
        }
        System.out.println(failures == 0 ? "demo passed: every received image is byte-identical" : failures + " case(s) failed");
        return failures == 0 ? 0 : 1;
    }
}
