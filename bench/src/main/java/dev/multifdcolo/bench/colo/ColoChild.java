package dev.multifdcolo.bench.colo;

import dev.multifdcolo.app.Transports;
import dev.multifdcolo.secondary.ChannelVerticle;
import dev.multifdcolo.secondary.HostPort;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.secondary.stream.FlushMode;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.transport.Transport;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * The child JVM of the COLO benchmark: our COLO secondary, wired as {@code multifd-colo receive --colo}
 * wires it (same {@link Transports} choice, the replica's flush worker verticles, one
 * {@link ChannelVerticle} per event loop on one pre-picked port, one {@link Replica}), serving one
 * COLO session until the primary goes away.
 *
 * <pre>
 *   ColoChild --listen 127.0.0.1:0 --channels N [--transport auto] [--instances 0] [--delay-ms 600]
 *             [--heartbeat-ms 120000] [--flush-workers 2] [--digest false]
 * </pre>
 *
 * Protocol: lines starting with {@code @@} on stdout. {@code @@ ready port=P ...} once listening;
 * per commit {@code @@ cp epoch=E pages=N runs=R ram=NS flush=NS pause=NS digest=D} (the
 * secondary's own {@link Checkpoint}); {@code @@ done epoch=E reason=...} after failover. Commit
 * lines are queued by the commit listener and printed by another thread, so printing is not inside
 * the pause (the listener runs before VMSTATE_LOADED is sent). Stdin: {@code quit}.
 *
 * <p>Differences from {@code receive --colo}: the digest on commit is off by default ({@code receive
 * --colo} computes a CRC32C of the whole guest image inside every pause), the heartbeat is long
 * because the benchmark interleaves cells and leaves sessions idle between blocks, and no image
 * files are written at failover.
 */
public final class ColoChild {
    private static final PrintStream OUT = System.out;
    private static final BlockingQueue<String> QUEUE = new LinkedBlockingQueue<>();

    private ColoChild() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> o = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            o.put(args[i], args[i + 1]);
        }
        HostPort listen = HostPort.parse(o.getOrDefault("--listen", "127.0.0.1:0"));
        int port = listen.port();
        if (port == 0) {
            try (java.net.ServerSocket probe = new java.net.ServerSocket(0, 1, java.net.InetAddress.getByName(listen.host()))) {
                port = probe.getLocalPort();
            }
        }
        int channels = Integer.parseInt(o.getOrDefault("--channels", "0"));
        int instances = Integer.parseInt(o.getOrDefault("--instances", "0"));
        int n = instances > 0 ? instances : Math.max(1, Runtime.getRuntime().availableProcessors());
        long delay = Long.parseLong(o.getOrDefault("--delay-ms", "600"));
        long heartbeat = Long.parseLong(o.getOrDefault("--heartbeat-ms", "120000"));
        int workers = Integer.parseInt(o.getOrDefault("--flush-workers", "2"));
        boolean digest = Boolean.parseBoolean(o.getOrDefault("--digest", "false"));
        Transport transport = Transports.choose(o.getOrDefault("--transport", "auto"));

        Thread printer = Thread.ofPlatform().daemon().name("cp-printer").start(() -> {
            try {
                while (true) {
                    say(QUEUE.take());
                }
            } catch (InterruptedException ignored) {
                // exit
            }
        });

        ReplicaConfig cfg = ReplicaConfig.defaults("bench", listen.host(), port)
                .withMultifd(channels)
                .withFlushMode(FlushMode.parse("auto"))
                .withColo(ReplicaConfig.ColoOptions.on(delay).withHeartbeat(heartbeat).withFlushWorkers(workers)
                        .withDigestOnCommit(digest));
        Vertx vertx = Vertx.builder().with(new VertxOptions().setEventLoopPoolSize(n)).withTransport(transport).build();
        Replica replica = new Replica(cfg);
        replica.onSessionStart(s -> s.onCommit(ColoChild::committed));
        replica.deploy(vertx, n, port).await();
        replica.nextMigration().onComplete(ar -> {
            if (ar.failed()) {
                QUEUE.add("failed " + String.valueOf(ar.cause()).replace('\n', ' '));
                return;
            }
            MigrationResult r = ar.result();
            MigrationResult.Colo c = r.colo();
            QUEUE.add("done epoch=" + (c == null ? -1 : c.epoch()) + " reason="
                    + (c == null ? "not-colo" : String.valueOf(c.failoverReason()).replace(' ', '_')));
            r.memory().close();
        });
        say("ready port=" + port + " transport=" + transport.name() + " loops=" + n + " pid=" + ProcessHandle.current().pid());

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().equals("quit")) {
                break;
            }
        }
        while (!QUEUE.isEmpty()) {
            Thread.sleep(10);
        }
        try {
            vertx.close().await();
            say("bye");
        } catch (Throwable t) {
            say("bye close-failed=" + String.valueOf(t).replace(' ', '_'));
        } finally {
            Runtime.getRuntime().halt(0);
        }
    }

    private static void committed(Checkpoint c) {
        if (c.epoch() == 0) {
            return;   // the precopy image
        }
        QUEUE.add("cp epoch=" + c.epoch() + " pages=" + c.dirtyPages() + " runs=" + c.runs() + " ram=" + c.transferNanos()
                + " flush=" + c.flushNanos() + " pause=" + c.pauseNanos() + " digest=" + (c.digest() == null ? "-" : c.digest()));
    }

    private static synchronized void say(String s) {
        OUT.println("@@ " + s);
        OUT.flush();
    }
}
