package dev.multifdcolo.app.cli;

import dev.multifdcolo.app.Transports;
import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.CheckpointJournal;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.ChannelVerticle;
import dev.multifdcolo.secondary.HostPort;
import dev.multifdcolo.secondary.ImageWriter;
import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationFailedException;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.MigrationStats;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.Sizes;
import dev.multifdcolo.secondary.net.TlsOptions;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintStream;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** {@code receive}: accept one incoming migration on a port and write the image to a directory. */
@Command(name = "receive", mixinStandardHelpOptions = true,
        description = "Accept one migration (plain or multifd) like `qemu -incoming tcp:HOST:PORT`, write the RAM image, exit."
                + " With --colo, stay a COLO secondary until failover (primary gone, error, heartbeat, or a line"
                + " 'failover' on stdin) and write the last committed checkpoint.")
public final class ReceiveCommand implements Callable<Integer> {

    @Option(names = "--listen", description = "HOST:PORT to listen on (port 0 = any; the port is printed); required unless --recover")
    String listen;

    @Option(names = "--multifd-channels", defaultValue = "0",
            description = "QEMU's multifd-channels; 0 = multifd off (default ${DEFAULT-VALUE})")
    int channels;

    @Option(names = "--multifd-compression", defaultValue = "none", description = "none, zlib or zstd")
    String compression;

    @Option(names = "--flush-mode", defaultValue = "auto",
            description = "multifd sync pairing: legacy (QEMU 7.2: EOS), modern (8.1+: MULTIFD_FLUSH) or auto")
    String flushMode;

    @Option(names = "--uuid", description = "expected VM UUID in the multifd hellos (default all zero, like no -uuid)")
    String uuid;

    @Option(names = "--max-ram", defaultValue = "64G", description = "refuse sources announcing more RAM (${DEFAULT-VALUE})")
    String maxRam;

    @Option(names = "--backing-dir", description = "map each RAMBlock from a file in this directory instead of anonymous memory")
    Path backingDir;

    @Option(names = "--out", required = true, description = "directory for one file per RAMBlock, device-state.bin, manifest.json")
    Path out;

    @Option(names = "--instances", defaultValue = "0", description = "channel verticle instances (event loops); 0 = cores")
    int instances;

    @Option(names = "--transport", defaultValue = "auto", description = "auto, io_uring, epoll or nio")
    String transport;

    @Option(names = "--timeout", defaultValue = "0", description = "give up after this many seconds (0 = wait forever)")
    long timeoutSeconds;

    @Option(names = "--quiet", description = "no progress lines")
    boolean quiet;

    @Option(names = "--colo", description = "be a COLO secondary (QEMU's x-colo): after precopy, keep checkpoints until failover")
    boolean colo;

    @Option(names = "--x-checkpoint-delay", defaultValue = "20000",
            description = "the primary's checkpoint interval in ms (heartbeat default = 3 x this)")
    long checkpointDelay;

    @Option(names = "--heartbeat-timeout", description = "ms without CHECKPOINT_REQUEST before failover (default 3 x delay)")
    Long heartbeat;

    @Option(names = "--flush-workers", defaultValue = "2", description = "COLO flush worker verticles")
    int flushWorkers;

    @Option(names = "--digest-on-commit",
            description = "log a CRC32C digest of the image at every commit (verification; adds ~0.1 s per GiB to each pause)")
    boolean digestOnCommit;

    @Option(names = "--loaded-before-flush",
            description = "COLO: send VMSTATE_LOADED once the checkpoint is complete, then flush (shorter primary pause;"
                    + " the checkpoint stays all or nothing)")
    boolean loadedBeforeFlush;

    @Option(names = "--recover", description = "with --backing-dir: after a crash of a file-backed COLO secondary"
            + " (kill -9), finish an interrupted checkpoint flush, report the committed epoch, write its image to --out, exit")
    boolean recover;

    @Option(names = "--tls-cert", description = "TLS on the port: our certificate chain (PEM); with --tls-key")
    Path tlsCert;

    @Option(names = "--tls-key", description = "TLS: the private key of --tls-cert (PEM)")
    Path tlsKey;

    @Option(names = "--tls-keystore", description = "TLS: our certificate and key as a PKCS12 file (instead of --tls-cert/--tls-key)")
    Path tlsKeystore;

    @Option(names = "--tls-password", description = "password of --tls-keystore (default: the environment variable "
            + TLS_PASSWORD_ENV + ")")
    String tlsPassword;

    @Option(names = "--tls-ca", description = "TLS: CA certificate(s) (PEM) that must sign the source's client certificate")
    Path tlsCa;

    @Option(names = "--tls-client-auth", description = "required (default with --tls-ca) or none")
    String tlsClientAuth;

    static final String TLS_PASSWORD_ENV = TlsOptions.PASSWORD_ENV;

    /** The TLS options from the --tls-* flags; null when none is given. */
    TlsOptions tls() {
        if (tlsCert == null && tlsKey == null && tlsKeystore == null) {
            if (tlsCa != null || tlsClientAuth != null || tlsPassword != null) {
                throw new IllegalArgumentException("--tls-ca, --tls-client-auth and --tls-password need --tls-cert/--tls-key"
                        + " or --tls-keystore");
            }
            return null;
        }
        String password = tlsPassword != null ? tlsPassword : System.getenv(TLS_PASSWORD_ENV);
        boolean required = tlsClientAuth != null ? TlsOptions.parseClientAuth(tlsClientAuth) : tlsCa != null;
        return new TlsOptions(tlsCert, tlsKey, tlsKeystore, tlsKeystore == null ? null : password, tlsCa, required,
                TlsOptions.DEFAULT_HANDSHAKE_TIMEOUT_MS);
    }

    @Override
    public Integer call() throws Exception {
        PrintStream err = System.err;
        if (recover) {
            return recover(err);
        }
        if (listen == null) {
            err.println("error: --listen HOST:PORT is required");
            return 2;
        }
        if (colo && backingDir != null) {
            long committed = CheckpointJournal.committedEpoch(backingDir);
            if (committed >= 0) {
                err.println("note: " + backingDir + " holds committed checkpoint " + committed
                        + " (plus any interrupted flush); a new migration replaces it: run --recover first to keep it");
            }
        }
        HostPort hp = HostPort.parse(listen);
        ReplicaConfig cfg;
        try {
            cfg = ReplicaConfig.defaults("receive", hp.host(), hp.port())
                    .withMultifd(channels)
                    .withCompression(Compression.fromQemuName(compression))
                    .withFlushMode(FlushMode.parse(flushMode))
                    .withUuid(ReplicaConfig.parseUuid(uuid))
                    .withLimits(Sizes.parse(maxRam), ReplicaConfig.DEFAULT_MAX_DEVICE_STATE, ReplicaConfig.DEFAULT_MAX_VMDESC)
                    .withBacking(backingDir == null ? Backing.anonymous() : Backing.files(backingDir))
                    .withTls(tls());
            if (colo) {
                ReplicaConfig.ColoOptions co = ReplicaConfig.ColoOptions.on(checkpointDelay).withFlushWorkers(flushWorkers)
                        .withDigestOnCommit(digestOnCommit).withLoadedBeforeFlush(loadedBeforeFlush);
                cfg = cfg.withColo(heartbeat == null ? co : co.withHeartbeat(heartbeat));
            }
        } catch (IllegalArgumentException e) {
            err.println("error: " + e.getMessage());
            return 2;
        }
        int n = instances > 0 ? instances : Math.max(1, Runtime.getRuntime().availableProcessors());
        Vertx vertx = Transports.vertx(transport, new VertxOptions().setEventLoopPoolSize(Math.max(n, 1)));
        try {
            // bind once to learn the port (port 0), then share it among the other instances
            Replica probe = new Replica(cfg);
            if (colo) {
                probe.deployWorkers(vertx).await();
                // manual failover: a line "failover" on standard input
                Thread t = new Thread(() -> {
                    try (var in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in))) {
                        String line;
                        while ((line = in.readLine()) != null) {
                            if (line.trim().equals("failover")) {
                                err.println(probe.failover("operator request") ? "failover requested" : "nothing to fail over");
                            }
                        }
                    } catch (java.io.IOException ignored) {
                        // stdin closed
                    }
                }, "stdin-commands");
                t.setDaemon(true);
                t.start();
            }
            // Vert.x shares one listening socket among instances that ask for the same host:port;
            // for port 0 pick a free port first, so every instance (event loop) gets connections.
            int port = hp.port() != 0 ? hp.port() : freePort(hp.host());
            Replica replica = probe;
            try {
                replica.sslContext(vertx);       // loads the TLS key material once (null without TLS)
            } catch (IllegalArgumentException e) {
                err.println("error: " + e.getMessage());
                return 2;
            }
            vertx.deployVerticle(() -> new ChannelVerticle(replica, port), new DeploymentOptions().setInstances(n)).await();
            TlsOptions tls = cfg.tls();
            System.out.println("listening on " + new HostPort(hp.host(), port) + " (multifd-channels " + channels
                    + ", compression " + compression + ", flush-mode " + flushMode + ", " + n + " event loops"
                    + (tls == null ? "" : ", TLS" + (tls.clientAuthRequired() ? " with client certificates required"
                    : " without client certificates") + ", channels classified by accept order") + ")");
            System.out.flush();
            var next = replica.nextMigration();
            long timer = quiet ? -1 : vertx.setPeriodic(1000, id -> progress(replica, err));
            MigrationResult r;
            try {
                var f = next.toCompletionStage().toCompletableFuture();
                r = timeoutSeconds > 0 ? f.get(timeoutSeconds, TimeUnit.SECONDS) : f.get();
            } catch (ExecutionException e) {
                Throwable c = e.getCause();
                err.println("rejected: " + (c instanceof MigrationFailedException m ? m.getCause().getMessage() : String.valueOf(c)));
                return 1;
            } catch (TimeoutException e) {
                err.println("timeout: no complete migration within " + timeoutSeconds + " s");
                return 3;
            } finally {
                if (timer >= 0) {
                    vertx.cancelTimer(timer);
                }
            }
            JsonObject manifest = ImageWriter.write(r, out);
            if (r.colo() != null) {
                System.out.println("failed over at checkpoint " + r.colo().epoch() + " (" + r.colo().failoverReason()
                        + "); wrote that checkpoint's image and device state");
            }
            MigrationStats s = r.stats();
            System.out.println("received " + r.memory().totalBytes() + " bytes of RAM in " + r.memory().blocks().size()
                    + " block(s), machine " + r.machine() + ": " + s);
            System.out.println("wrote " + out.toAbsolutePath() + " (digest " + manifest.getString("digest") + ")");
            r.memory().close();
            return 0;
        } finally {
            vertx.close().await();
        }
    }

    /**
     * {@code --recover}: the backing directory back to exactly one committed checkpoint (an
     * interrupted flush redone from the durable cache and redo record), reported and written to
     * --out like a received image (one file per block, device-state.bin, manifest.json).
     */
    private int recover(PrintStream err) throws Exception {
        if (backingDir == null) {
            err.println("error: --recover needs --backing-dir");
            return 2;
        }
        if (out.toAbsolutePath().normalize().equals(backingDir.toAbsolutePath().normalize())) {
            err.println("error: --out must not be the backing directory (its image files would be overwritten)");
            return 2;
        }
        long t0 = System.nanoTime();
        try (CheckpointJournal.Recovery r = CheckpointJournal.recover(backingDir)) {
            GuestMemory m = r.memory();
            String fast = m.fastDigest();
            double ms = (System.nanoTime() - t0) / 1e6;
            System.out.println("recovered epoch " + r.epoch() + ", digest " + fast
                    + (r.redone() ? " (interrupted flush redone: " + r.redonePages() + " pages)" : " (no flush was interrupted)")
                    + String.format(" in %.1f ms", ms));
            Files.createDirectories(out);
            JsonArray blocks = new JsonArray();
            for (RamBlock b : m.blocks()) {
                String file = GuestMemory.fileName(b.name());
                try (FileChannel ch = FileChannel.open(out.resolve(file), StandardOpenOption.CREATE,
                        StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                    var bb = b.guest().asByteBuffer();
                    while (bb.hasRemaining()) {
                        ch.write(bb);
                    }
                }
                blocks.add(new JsonObject().put("name", b.name()).put("file", file).put("size", b.length())
                        .put("sha256", GuestMemory.sha256(b.guest())));
            }
            Files.write(out.resolve("device-state.bin"), r.deviceState());
            JsonObject manifest = new JsonObject()
                    .put("replica", "recover")
                    .put("blocks", blocks)
                    .put("digest", m.digest())
                    .put("colo", new JsonObject().put("epoch", r.epoch()).put("recovered", true)
                            .put("redone", r.redone()).put("fast-digest", fast))
                    .put("device-state", new JsonObject().put("file", "device-state.bin").put("size", r.deviceState().length)
                            .put("sha256", HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(r.deviceState()))));
            Files.writeString(out.resolve("manifest.json"), manifest.encodePrettily());
            System.out.println("wrote " + out.toAbsolutePath() + " (digest " + manifest.getString("digest") + ")");
            return 0;
        } catch (CheckpointJournal.NoCheckpointException e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
    }

    static int freePort(String host) throws java.io.IOException {
        try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getByName(host))) {
            return s.getLocalPort();
        }
    }

    private static void progress(Replica replica, PrintStream err) {
        IncomingMigration s = replica.current();
        if (s != null && !s.finished()) {
            err.println("progress: " + s.stats());
        }
    }
}
