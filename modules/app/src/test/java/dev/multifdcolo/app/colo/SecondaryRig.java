package dev.multifdcolo.app.colo;

import dev.multifdcolo.app.Transports;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.Workload;
import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;

import java.io.IOException;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Our COLO secondary in the test JVM (real sockets, the app's transport choice), plus helpers
 * to start a {@link ColoPrimary} emulator against it. Sessions run one after another on the same
 * replica; {@link #commits} holds the current session's commit digests by epoch.
 */
final class SecondaryRig implements AutoCloseable {
    final Vertx vertx;
    final Replica replica;
    final int port;
    final int multifd;
    final Compression compression;
    /** epoch → the secondary's commit of the current session. */
    final Map<Long, Checkpoint> commits = new ConcurrentHashMap<>();
    final AtomicReference<IncomingMigration> session = new AtomicReference<>();

    /**
     * The transport the replica runs on: {@code -Dcolo.transport=...}, else the app's choice
     * ("auto": io_uring, epoll, nio) — except io_uring while Netty's multishot POLL_ADD is on:
     * with it, Netty 4.2.9 can lose the read that would report a peer's RST (netty/netty#17049,
     * fixed by #17090), so a cut primary is only noticed by the heartbeat. Then epoll is used and
     * a warning says so; once the app turns multishot POLL_ADD off (system property
     * {@code io.netty.iouring.pollAddMultishotEnabled=false} before Netty loads) or Netty has the
     * fix, these tests run on io_uring again.
     */
    static final String TRANSPORT = chooseTransport();

    private static String chooseTransport() {
        String t = System.getProperty("colo.transport");
        if (t != null) {
            return t;
        }
        if (io.vertx.core.transport.Transport.IO_URING.available()
                && io.netty.channel.uring.IoUring.isPollAddMultishotEnabled()) {
            System.err.println("WARNING: COLO tests run on epoll: io_uring with multishot POLL_ADD misses resets"
                    + " (netty/netty#17049); set io.netty.iouring.pollAddMultishotEnabled=false in the app");
            return io.vertx.core.transport.Transport.EPOLL.available() ? "epoll" : "nio";
        }
        return "auto";
    }

    SecondaryRig(int multifd, long heartbeatMs) throws IOException {
        this(multifd, heartbeatMs, Compression.NONE);
    }

    SecondaryRig(int multifd, long heartbeatMs, Compression compression) throws IOException {
        this(multifd, heartbeatMs, compression, c -> c);
    }

    /** As above, with {@code tweak} applied to the replica's configuration. */
    SecondaryRig(int multifd, long heartbeatMs, Compression compression,
                 java.util.function.UnaryOperator<ReplicaConfig> tweak) throws IOException {
        this.multifd = multifd;
        this.compression = compression;
        this.vertx = Transports.vertx(TRANSPORT, new VertxOptions().setEventLoopPoolSize(4)
                .setMaxEventLoopExecuteTime(500).setMaxEventLoopExecuteTimeUnit(TimeUnit.MILLISECONDS)
                .setMaxWorkerExecuteTime(2).setMaxWorkerExecuteTimeUnit(TimeUnit.SECONDS));
        this.port = freePort();
        ReplicaConfig cfg = ReplicaConfig.defaults("colo-test", "127.0.0.1", port).withMultifd(multifd)
                .withCompression(compression)
                .withColo(ReplicaConfig.ColoOptions.on(600).withHeartbeat(heartbeatMs).withDigestOnCommit(true))
                // the rig runs session after session on one replica, failovers included
                .withGuards(ReplicaConfig.Guards.DEFAULT.withAcceptAfterFailover(true));
        cfg = tweak.apply(cfg);
        this.replica = new Replica(cfg);
        replica.onSessionStart(s -> {
            session.set(s);
            s.onCommit(cp -> commits.put(cp.epoch(), cp));
        });
        replica.deploy(vertx, 4).await();
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    /** Expects the next session: call before the primary connects. */
    Future<MigrationResult> next() {
        commits.clear();
        session.set(null);
        return replica.nextMigration();
    }

    SenderConfig.Builder sender(Framing framing, int channels) {
        return SenderConfig.builder("127.0.0.1", port).framing(framing).multifd(channels)
                .compression(channels > 0 ? compression : Compression.NONE)
                .stallTimeout(Duration.ofSeconds(20)).connectTimeout(Duration.ofSeconds(5));
    }

    /** A seeded image of {@code bytes} in one block "ram". */
    static GuestMemory image(long bytes, long seed) throws Exception {
        return GuestImages.generate(bytes, seed, 0.3);
    }

    /** Connects a COLO primary emulator and runs its precopy (killed again if that fails). */
    ColoPrimary startPrimary(Framing framing, int channels, GuestMemory memory, Workload w, ColoPrimary.Options o)
            throws IOException {
        ColoPrimary p = ColoPrimary.connect(sender(framing, channels).build(), memory, w, o);
        try {
            p.start();
        } catch (IOException | RuntimeException e) {
            p.kill();
            throw e;
        }
        return p;
    }

    static MigrationResult await(Future<MigrationResult> f, long seconds) throws Exception {
        return f.toCompletionStage().toCompletableFuture().get(seconds, TimeUnit.SECONDS);
    }

    @Override
    public void close() {
        vertx.close().await();
    }
}
