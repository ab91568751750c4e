package dev.multifdcolo.bench.loopback;

import dev.multifdcolo.app.Transports;
import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.secondary.ChannelVerticle;
import dev.multifdcolo.secondary.HostPort;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.MigrationStats;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.transport.Transport;
import jdk.jfr.Configuration;
import jdk.jfr.Recording;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.StringJoiner;
import java.util.TreeMap;

/**
 * The child JVM of the loopback benchmark: either our receiver or the raw sink, listening on
 * loopback and serving one migration after another until told to quit.
 *
 * <pre>
 *   LoopbackChild receiver|sink --listen 127.0.0.1:0 --channels N [--compression none|zlib|zstd]
 *                 [--transport auto|io_uring|epoll|nio] [--instances 0] [--flush-mode auto] [--share-port false]
 *                 [--backing-dir DIR]
 * </pre>
 *
 * The receiver is wired exactly as {@code multifd-colo receive} wires it (same {@link Transports}
 * choice, one {@link ChannelVerticle} instance per event loop sharing the port, one
 * {@link Replica}); only the image file writing after completion is left out, because it is not
 * part of receiving. The sink uses the same transport, loop count, deployment and socket options.
 *
 * <p>Protocol: lines starting with {@code @@} on stdout; commands on stdin ({@code release
 * [digest]}, {@code jfr-start}, {@code jfr-dump PATH}, {@code quit}). After a session ends the
 * child prints {@code @@ done t1=NANOS ...} (t1 is {@link System#nanoTime}, CLOCK_MONOTONIC, so it
 * compares with the parent's clock) and {@code @@ threads ...} (CPU per thread since the previous
 * release); it keeps the received image until {@code release}.
 */
public final class LoopbackChild {
    private static final PrintStream OUT = System.out;

    private final ThreadMXBean threads = ManagementFactory.getThreadMXBean();
    private volatile Map<Long, Long> threadBase = new HashMap<>();
    private volatile Map<String, Long> internalBase = new TreeMap<>();
    private volatile MigrationResult last;
    private Replica replica;
    private Recording recording;

    public static void main(String[] args) throws Exception {
        new LoopbackChild().run(args);
    }

    private void run(String[] args) throws Exception {
        if (args.length < 1) {
            throw new IllegalArgumentException("usage: LoopbackChild receiver|sink --listen HOST:PORT --channels N ...");
        }
        String mode = args[0];
        Map<String, String> o = new HashMap<>();
        for (int i = 1; i + 1 < args.length; i += 2) {
            o.put(args[i], args[i + 1]);
        }
        HostPort listen = HostPort.parse(o.getOrDefault("--listen", "127.0.0.1:0"));
        if (listen.port() == 0) {
            // Pick the port before deploying so that every instance listens on the same port and
            // Vert.x spreads the connections over the event loops (the default deployment below
            // does the same by reusing the first instance's bound port).
            try (java.net.ServerSocket probe = new java.net.ServerSocket(0, 1, java.net.InetAddress.getByName(listen.host()))) {
                listen = new HostPort(listen.host(), probe.getLocalPort());
            }
        }
        HostPort hp = listen;
        int channels = Integer.parseInt(o.getOrDefault("--channels", "0"));
        Compression compression = Compression.fromQemuName(o.getOrDefault("--compression", "none"));
        int instances = Integer.parseInt(o.getOrDefault("--instances", "0"));
        int n = instances > 0 ? instances : Math.max(1, Runtime.getRuntime().availableProcessors());
        Transport transport = Transports.choose(o.getOrDefault("--transport", "auto"));
        threads.setThreadCpuTimeEnabled(true);

        Vertx vertx = Vertx.builder().with(new VertxOptions().setEventLoopPoolSize(n)).withTransport(transport).build();
        int port;
        if (mode.equals("receiver")) {
            ReplicaConfig cfg = ReplicaConfig.defaults("bench", hp.host(), hp.port())
                    .withMultifd(channels)
                    .withCompression(compression)
                    .withFlushMode(FlushMode.parse(o.getOrDefault("--flush-mode", "auto")))
                    .withBacking(o.containsKey("--backing-dir") ? Backing.files(Path.of(o.get("--backing-dir")))
                            : Backing.anonymous());
            replica = new Replica(cfg);
            // as ReceiveCommand: every instance on the one (pre-picked) port
            Replica r = replica;
            vertx.deployVerticle(() -> new ChannelVerticle(r, hp.port()), new DeploymentOptions().setInstances(n)).await();
            port = hp.port();
            armReceiver();
        } else if (mode.equals("sink")) {
            RawSink sink = new RawSink(1 + channels, this::sinkDone);
            vertx.deployVerticle(() -> new RawSink.SinkVerticle(sink, hp.host(), hp.port()),
                    new DeploymentOptions().setInstances(n)).await();
            port = hp.port();
        } else {
            throw new IllegalArgumentException("mode must be receiver or sink, not " + mode);
        }
        baseline();
        say("ready port=" + port + " transport=" + transport.name() + " loops=" + n + " pid=" + ProcessHandle.current().pid());

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] cmd = line.trim().split(" ", 2);
            switch (cmd[0]) {
                case "release" -> release(cmd.length > 1 && cmd[1].equals("digest"));
                case "jfr-start" -> {
                    recording = new Recording(Configuration.getConfiguration("profile"));
                    recording.start();
                    say("jfr-started");
                }
                case "jfr-dump" -> {
                    if (recording != null) {
                        recording.stop();
                        recording.dump(Path.of(cmd[1]));
                        recording.close();
                        recording = null;
                    }
                    say("jfr-dumped");
                }
                case "quit" -> {
                    vertx.close().await();
                    say("bye");
                    System.exit(0);
                }
                case "" -> { }
                default -> say("error unknown command " + cmd[0]);
            }
        }
        vertx.close().await();
        System.exit(0);
    }

    private void armReceiver() {
        replica.nextMigration().onComplete(ar -> {
            long t1 = System.nanoTime();
            if (ar.failed()) {
                say("failed " + String.valueOf(ar.cause()).replace('\n', ' '));
                threadLine();
                return;
            }
            MigrationResult r = ar.result();
            last = r;
            MigrationStats s = r.stats();
            say("done t1=" + t1 + " bytes=" + s.bytes.sum() + " normal=" + s.normalPages.sum() + " zero="
                    + s.zeroPages.sum() + " packets=" + s.packets.sum() + " syncs=" + s.syncs.sum()
                    + " first=" + s.startNanos);
            threadLine();
        });
    }

    private void sinkDone(RawSink.Session s) {
        StringJoiner loops = new StringJoiner(",");
        s.loops().forEach((k, v) -> loops.add(k + ":" + v));
        say("done t1=" + s.lastReadNanos() + " bytes=" + s.bytes() + " first=" + s.firstReadNanos() + " conns="
                + s.connections() + " loops=" + loops);
        threadLine();
    }

    private void release(boolean digest) {
        MigrationResult r = last;
        last = null;
        String d = "-";
        if (r != null) {
            if (digest) {
                d = r.memory().fastDigest();
            }
            r.memory().close();
        }
        if (replica != null) {
            armReceiver();
        }
        baseline();
        say("released digest=" + d);
    }

    /** CPU per thread since the last baseline: Java threads by name, JVM/kernel threads by kind. */
    private void threadLine() {
        Map<String, Long> cpu = new TreeMap<>();
        for (ThreadInfo ti : threads.getThreadInfo(threads.getAllThreadIds())) {
            if (ti == null) {
                continue;
            }
            long t = threads.getThreadCpuTime(ti.getThreadId());
            if (t < 0) {
                continue;
            }
            long d = t - threadBase.getOrDefault(ti.getThreadId(), 0L);
            if (d > 0) {
                cpu.merge(ti.getThreadName(), d, Long::sum);
            }
        }
        Map<String, Long> internal = ProcCpu.delta(
                ProcCpu.internalCategories(ProcCpu.threads(ProcessHandle.current().pid())), internalBase);
        internal.forEach((k, v) -> {
            if (v > 0) {
                cpu.put(k, v);
            }
        });
        StringJoiner j = new StringJoiner(";");
        cpu.forEach((k, v) -> j.add(k + "=" + v));
        say("threads " + j);
    }

    private void baseline() {
        Map<Long, Long> b = new HashMap<>();
        for (long id : threads.getAllThreadIds()) {
            long t = threads.getThreadCpuTime(id);
            if (t >= 0) {
                b.put(id, t);
            }
        }
        threadBase = b;
        internalBase = ProcCpu.internalCategories(ProcCpu.threads(ProcessHandle.current().pid()));
    }

    private static synchronized void say(String s) {
        OUT.println("@@ " + s);
        OUT.flush();
    }
}
