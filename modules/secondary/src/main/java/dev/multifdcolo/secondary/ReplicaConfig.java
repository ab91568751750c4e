package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.secondary.net.TlsOptions;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import io.vertx.core.json.JsonObject;

import java.nio.file.Path;
import java.util.HexFormat;
import java.util.Objects;
import java.util.UUID;

/**
 * One replica: one listening port, like one {@code -incoming} of a QEMU destination. Keys are
 * named like QEMU's where QEMU has one ({@code multifd-channels}, {@code multifd-compression}).
 *
 * @param multifdChannels 0 = multifd off (plain precopy only), else QEMU's multifd-channels
 * @param tls             null = plain TCP; else TLS on the port, and channels are classified by
 *                        order instead of by their first bytes (see {@code Connection})
 */
public record ReplicaConfig(
        String name,
        String host,
        int port,
        int multifdChannels,
        FlushMode flushMode,
        Compression compression,
        byte[] uuid,
        long maxRamBytes,
        Backing backing,
        long maxDeviceStateBytes,
        int maxVmdescBytes,
        String expectedMachine,
        ColoOptions coloOptions,
        Guards guards,
        TlsOptions tls) {

    /**
     * What protects a replica from slow, silent or abusive peers (issue 7). QEMU's destination has
     * none of these (it waits forever); a secondary that must stay available cannot.
     *
     * @param setupTimeoutMs      a connection must send its first 4 bytes, and a migration must have
     *                            its main channel and every multifd channel bound, within this time
     * @param stallTimeoutMs      precopy: the session must receive at least {@code minRate} bytes/s
     *                            averaged over each window of this length (0 = off; turn it off for
     *                            sources that wait for an operator, e.g. pause-before-switchover)
     * @param minRate             bytes per second, see above
     * @param checkpointTimeoutMs COLO: a checkpoint (first byte after the last commit → the live
     *                            state's end) must arrive within this time, else failover (0 = off)
     * @param maxConnections      open connections on the replica port (all migrations and strays)
     * @param acceptAfterFailover after a failover, accept a new migration (true) or refuse every
     *                            connection until an operator resets the replica (false, default:
     *                            the failed-over image is the one to keep)
     */
    public record Guards(long setupTimeoutMs, long stallTimeoutMs, long minRate, long checkpointTimeoutMs,
                         int maxConnections, boolean acceptAfterFailover) {
        public static final Guards DEFAULT = new Guards(10_000, 60_000, 1024, 60_000, 64, false);

        public Guards {
            if (setupTimeoutMs <= 0 || stallTimeoutMs < 0 || minRate < 0 || checkpointTimeoutMs < 0
                    || maxConnections < 1 || maxConnections > 65_536) {
                throw new IllegalArgumentException("bad limits: channel-setup-timeout-ms > 0, stall-timeout-ms,"
                        + " min-rate and checkpoint-timeout-ms >= 0, max-connections 1..65536");
            }
        }

        public Guards withSetupTimeout(long ms) {
            return new Guards(ms, stallTimeoutMs, minRate, checkpointTimeoutMs, maxConnections, acceptAfterFailover);
        }

        public Guards withStall(long ms, long bytesPerSecond) {
            return new Guards(setupTimeoutMs, ms, bytesPerSecond, checkpointTimeoutMs, maxConnections, acceptAfterFailover);
        }

        public Guards withCheckpointTimeout(long ms) {
            return new Guards(setupTimeoutMs, stallTimeoutMs, minRate, ms, maxConnections, acceptAfterFailover);
        }

        public Guards withMaxConnections(int n) {
            return new Guards(setupTimeoutMs, stallTimeoutMs, minRate, checkpointTimeoutMs, n, acceptAfterFailover);
        }

        public Guards withAcceptAfterFailover(boolean accept) {
            return new Guards(setupTimeoutMs, stallTimeoutMs, minRate, checkpointTimeoutMs, maxConnections, accept);
        }
    }

    /**
     * COLO settings of a replica (the secondary's {@code x-colo}; 11.1 never sends ENABLE_COLO,
     * so COLO mode comes from here, §9.5).
     *
     * @param checkpointDelayMs the primary's {@code x-checkpoint-delay}: the expected interval
     * @param heartbeatMs       no CHECKPOINT_REQUEST for this long = failover (default 3 x delay)
     * @param flushWorkers      flush worker verticle instances
     * @param maxBlob           bound for VMSTATE_SIZE (device-state bytes per checkpoint)
     * @param digestOnCommit    compute and log a CRC32C image digest at every commit (verification:
     *                          it runs inside the checkpoint pause, ~0.1 s per GiB; off by default)
     * @param loadedBeforeFlush VMSTATE_LOADED before the flush instead of after it (see {@link #withLoadedBeforeFlush})
     */
    public record ColoOptions(boolean enabled, long checkpointDelayMs, long heartbeatMs, int flushWorkers, long maxBlob,
                              boolean digestOnCommit, boolean loadedBeforeFlush) {
        public static final ColoOptions OFF = new ColoOptions(false, 20_000, 60_000, 2, 64L << 20, true, false);

        public ColoOptions {
            if (checkpointDelayMs <= 0 || heartbeatMs <= 0 || flushWorkers < 1 || flushWorkers > 64 || maxBlob <= 0
                    || maxBlob > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("bad COLO options: delay and heartbeat > 0, 1..64 flush workers,"
                        + " 0 < blob-limit < 2 GiB");
            }
        }

        public static ColoOptions on(long checkpointDelayMs) {
            return new ColoOptions(true, checkpointDelayMs, 3 * checkpointDelayMs, 2, 64L << 20, false, false);
        }

        public ColoOptions withHeartbeat(long ms) {
            return new ColoOptions(enabled, checkpointDelayMs, ms, flushWorkers, maxBlob, digestOnCommit, loadedBeforeFlush);
        }

        public ColoOptions withFlushWorkers(int n) {
            return new ColoOptions(enabled, checkpointDelayMs, heartbeatMs, n, maxBlob, digestOnCommit, loadedBeforeFlush);
        }

        public ColoOptions withMaxBlob(long bytes) {
            return new ColoOptions(enabled, checkpointDelayMs, heartbeatMs, flushWorkers, bytes, digestOnCommit,
                    loadedBeforeFlush);
        }

        public ColoOptions withDigestOnCommit(boolean on) {
            return new ColoOptions(enabled, checkpointDelayMs, heartbeatMs, flushWorkers, maxBlob, on, loadedBeforeFlush);
        }

        /**
         * Send VMSTATE_LOADED as soon as the checkpoint is complete (and, file-backed, its redo
         * record durable), then flush: we run no guest, so nothing needs the flush inside the
         * primary's pause. The checkpoint stays all or nothing: the next checkpoint's RAM waits
         * at the gate and the main channel stays paused until the flush is done, and a failover
         * during the flush finishes and commits it first (the primary already counts it).
         */
        public ColoOptions withLoadedBeforeFlush(boolean on) {
            return new ColoOptions(enabled, checkpointDelayMs, heartbeatMs, flushWorkers, maxBlob, digestOnCommit, on);
        }
    }

    /** True when this replica is a COLO secondary. */
    public boolean colo() {
        return coloOptions.enabled();
    }

    public static final long DEFAULT_MAX_RAM = 64L << 30;
    public static final long DEFAULT_MAX_DEVICE_STATE = 64L << 20;
    public static final int DEFAULT_MAX_VMDESC = 16 << 20;

    public ReplicaConfig {
        Objects.requireNonNull(name, "name");
        if (multifdChannels < 0 || multifdChannels > 255) {
            throw new IllegalArgumentException("multifd-channels must be 0..255, got " + multifdChannels);
        }
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be 0..65535, got " + port);
        }
        if (uuid == null || uuid.length != 16) {
            throw new IllegalArgumentException("uuid must be 16 bytes");
        }
        if (maxRamBytes <= 0 || maxDeviceStateBytes <= 0 || maxDeviceStateBytes > Integer.MAX_VALUE - 8 || maxVmdescBytes <= 0) {
            throw new IllegalArgumentException("limits must be positive (device state < 2 GiB)");
        }
        uuid = uuid.clone();
        Objects.requireNonNull(guards, "guards");
        if (coloOptions.enabled() && backing instanceof Backing.Files && guards.acceptAfterFailover()) {
            throw new IllegalArgumentException("after-failover: accept cannot be combined with backing-dir: the next"
                    + " migration would truncate the failed-over image's files. Use refuse, save the image, then reset");
        }
    }

    public static ReplicaConfig defaults(String name, String host, int port) {
        return new ReplicaConfig(name, host, port, 0, FlushMode.AUTO, Compression.NONE, new byte[16],
                DEFAULT_MAX_RAM, Backing.anonymous(), DEFAULT_MAX_DEVICE_STATE, DEFAULT_MAX_VMDESC, null, ColoOptions.OFF,
                Guards.DEFAULT, null);
    }

    public ReplicaConfig withMultifd(int channels) {
        return new ReplicaConfig(name, host, port, channels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, guards, tls);
    }

    public ReplicaConfig withFlushMode(FlushMode mode) {
        return new ReplicaConfig(name, host, port, multifdChannels, mode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, guards, tls);
    }

    public ReplicaConfig withCompression(Compression c) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, c, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, guards, tls);
    }

    public ReplicaConfig withColo(ColoOptions c) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, c, guards, tls);
    }

    public ReplicaConfig withPort(int p) {
        return new ReplicaConfig(name, host, p, multifdChannels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, guards, tls);
    }

    public ReplicaConfig withLimits(long maxRam, long maxDeviceState, int maxVmdesc) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRam, backing,
                maxDeviceState, maxVmdesc, expectedMachine, coloOptions, guards, tls);
    }

    public ReplicaConfig withGuards(Guards g) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, g, tls);
    }

    public ReplicaConfig withUuid(byte[] u) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, u, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, guards, tls);
    }

    public ReplicaConfig withBacking(Backing b) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRamBytes, b,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, guards, tls);
    }

    /** TLS on this replica's port (null = plain TCP). */
    public ReplicaConfig withTls(TlsOptions t) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, guards, t);
    }

    /** Parses a UUID in QEMU's textual form (or 32 hex digits); null/empty = all zero. */
    public static byte[] parseUuid(String text) {
        if (text == null || text.isBlank()) {
            return new byte[16];
        }
        String hex = text.replace("-", "");
        if (hex.length() != 32) {
            throw new IllegalArgumentException("uuid '" + text + "' is not 16 bytes");
        }
        return HexFormat.of().parseHex(hex);
    }

    public String uuidText() {
        String h = HexFormat.of().formatHex(uuid);
        return new UUID(Long.parseUnsignedLong(h.substring(0, 16), 16), Long.parseUnsignedLong(h.substring(16), 16)).toString();
    }

    /** Every key a replica's JSON/YAML object may have. */
    public static final java.util.Set<String> KEYS = java.util.Set.of("name", "listen", "host", "port", "multifd-channels",
            "flush-mode", "multifd-compression", "uuid", "max-ram", "backing-dir", "max-device-state", "max-vmdesc", "machine",
            "colo", "x-checkpoint-delay", "heartbeat-timeout-ms", "flush-workers", "blob-limit", "digest-on-commit",
            "channel-setup-timeout-ms", "stall-timeout-ms", "min-rate", "checkpoint-timeout-ms", "max-connections",
            "after-failover", "tls", "loaded-before-flush");

    /**
     * Reads a replica from its JSON config object (conf/ files, through Vert.x Config).
     * Unknown keys are rejected so a typo never silently means "default".
     */
    public static ReplicaConfig fromJson(JsonObject j) {
        for (String k : j.fieldNames()) {
            if (!KEYS.contains(k)) {
                throw new IllegalArgumentException("unknown replica key '" + k + "'");
            }
        }
        String name = string(j, "name", null);
        if (name == null || name.isBlank()) {
            throw new IllegalArgumentException("replica needs a name");
        }
        String host = string(j, "host", "127.0.0.1");
        int port = (int) integer(j, "port", 0, 0, 65535);
        String listen = string(j, "listen", null);
        if (listen != null) {
            HostPort hp = HostPort.parse(listen);
            host = hp.host();
            port = hp.port();
        }
        String dir = string(j, "backing-dir", null);
        long delay = integer(j, "x-checkpoint-delay", 20_000L, 1, Long.MAX_VALUE / 3);
        ColoOptions colo = new ColoOptions(bool(j, "colo", false), delay,
                integer(j, "heartbeat-timeout-ms", 3 * delay, 1, Long.MAX_VALUE),
                (int) integer(j, "flush-workers", 2, 1, 64), size(j, "blob-limit", 64L << 20, Integer.MAX_VALUE - 8),
                bool(j, "digest-on-commit", false), bool(j, "loaded-before-flush", false));
        return new ReplicaConfig(name, host, port,
                (int) integer(j, "multifd-channels", 0, 0, 255),
                FlushMode.parse(string(j, "flush-mode", "auto")),
                Compression.fromQemuName(string(j, "multifd-compression", "none")),
                parseUuid(string(j, "uuid", null)),
                size(j, "max-ram", DEFAULT_MAX_RAM, Long.MAX_VALUE),
                dir == null ? Backing.anonymous() : Backing.files(Path.of(dir)),
                size(j, "max-device-state", DEFAULT_MAX_DEVICE_STATE, Integer.MAX_VALUE - 8),
                (int) size(j, "max-vmdesc", DEFAULT_MAX_VMDESC, Integer.MAX_VALUE - 8),
                string(j, "machine", null),
                colo,
                guards(j),
                tls(name, j.getValue("tls")));
    }

    private static TlsOptions tls(String replica, Object value) {
        if (value == null) {
            return null;
        }
        if (!(value instanceof JsonObject o)) {
            throw new IllegalArgumentException("replica " + replica + ": tls must be an object (cert, key, ca, client-auth, ...)");
        }
        try {
            return TlsOptions.fromJson(o);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("replica " + replica + ": " + e.getMessage(), e);
        }
    }

    private static Guards guards(JsonObject j) {
        Guards d = Guards.DEFAULT;
        String after = string(j, "after-failover", "refuse");
        if (!after.equals("refuse") && !after.equals("accept")) {
            throw new IllegalArgumentException("after-failover must be refuse or accept, got '" + after + "'");
        }
        return new Guards(integer(j, "channel-setup-timeout-ms", d.setupTimeoutMs(), 1, Long.MAX_VALUE / 1_000_000),
                integer(j, "stall-timeout-ms", d.stallTimeoutMs(), 0, Long.MAX_VALUE / 1_000_000),
                isZero(j.getValue("min-rate")) ? 0 : size(j, "min-rate", d.minRate(), Long.MAX_VALUE / 1_000_000),
                integer(j, "checkpoint-timeout-ms", d.checkpointTimeoutMs(), 0, Long.MAX_VALUE / 1_000_000),
                (int) integer(j, "max-connections", d.maxConnections(), 1, 65_536),
                after.equals("accept"));
    }

    // Typed reads of one key. A value of the wrong JSON type, a fraction or a number out of range is
    // an IllegalArgumentException naming the key (the service reports it and keeps its previous
    // configuration), never a ClassCastException or a silently truncated number. A null value is
    // the same as an absent key.

    private static boolean isZero(Object v) {
        return (v instanceof Number n && n.doubleValue() == 0) || "0".equals(v);
    }

    private static String string(JsonObject j, String key, String def) {
        Object v = j.getValue(key);
        if (v == null) {
            return def;
        }
        if (!(v instanceof String s)) {
            throw new IllegalArgumentException(key + " must be a string, got " + v);
        }
        return s;
    }

    private static boolean bool(JsonObject j, String key, boolean def) {
        Object v = j.getValue(key);
        if (v == null) {
            return def;
        }
        if (!(v instanceof Boolean b)) {
            throw new IllegalArgumentException(key + " must be true or false, got " + v);
        }
        return b;
    }

    private static long integer(JsonObject j, String key, long def, long min, long max) {
        Object v = j.getValue(key);
        if (v == null) {
            return def;
        }
        long n;
        try {
            n = Sizes.wholeNumber(v);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(key + " must be a whole number, got " + v);
        }
        if (n < min || n > max) {
            throw new IllegalArgumentException(key + " must be " + min + ".." + max + ", got " + v);
        }
        return n;
    }

    private static long size(JsonObject j, String key, long def, long max) {
        Object v = j.getValue(key);
        if (v == null) {
            return def;
        }
        if (!(v instanceof Number) && !(v instanceof String)) {
            throw new IllegalArgumentException(key + " must be a size (4096, \"64M\", \"1G\"), got " + v);
        }
        long n;
        try {
            n = Sizes.parse(v);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(key + ": " + e.getMessage());
        }
        if (n <= 0 || n > max) {
            throw new IllegalArgumentException(key + " must be 1.." + max + " bytes, got " + v);
        }
        return n;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ReplicaConfig r && r.toString().equals(toString());
    }

    @Override
    public int hashCode() {
        return toString().hashCode();
    }

    @Override
    public String toString() {
        return "replica " + name + " " + host + ":" + port + " multifd-channels=" + multifdChannels
                + " flush-mode=" + flushMode.name().toLowerCase() + " multifd-compression=" + compression.qemuName()
                + " uuid=" + uuidText() + " max-ram=" + maxRamBytes + " backing=" + backing
                + " max-device-state=" + maxDeviceStateBytes + " max-vmdesc=" + maxVmdescBytes
                + " machine=" + expectedMachine + " colo=" + coloOptions + " " + guards + (tls == null ? "" : " " + tls);
    }
}
