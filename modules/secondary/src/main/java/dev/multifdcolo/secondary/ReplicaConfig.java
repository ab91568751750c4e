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
        TlsOptions tls) {

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
     */
    public record ColoOptions(boolean enabled, long checkpointDelayMs, long heartbeatMs, int flushWorkers, long maxBlob,
                              boolean digestOnCommit) {
        public static final ColoOptions OFF = new ColoOptions(false, 20_000, 60_000, 2, 64L << 20, true);

        public ColoOptions {
            if (checkpointDelayMs <= 0 || heartbeatMs <= 0 || flushWorkers < 1 || flushWorkers > 64 || maxBlob <= 0
                    || maxBlob > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("bad COLO options: delay and heartbeat > 0, 1..64 flush workers,"
                        + " 0 < blob-limit < 2 GiB");
            }
        }

        public static ColoOptions on(long checkpointDelayMs) {
            return new ColoOptions(true, checkpointDelayMs, 3 * checkpointDelayMs, 2, 64L << 20, false);
        }

        public ColoOptions withHeartbeat(long ms) {
            return new ColoOptions(enabled, checkpointDelayMs, ms, flushWorkers, maxBlob, digestOnCommit);
        }

        public ColoOptions withFlushWorkers(int n) {
            return new ColoOptions(enabled, checkpointDelayMs, heartbeatMs, n, maxBlob, digestOnCommit);
        }

        public ColoOptions withMaxBlob(long bytes) {
            return new ColoOptions(enabled, checkpointDelayMs, heartbeatMs, flushWorkers, bytes, digestOnCommit);
        }

        public ColoOptions withDigestOnCommit(boolean on) {
            return new ColoOptions(enabled, checkpointDelayMs, heartbeatMs, flushWorkers, maxBlob, on);
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
    }

    public static ReplicaConfig defaults(String name, String host, int port) {
        return new ReplicaConfig(name, host, port, 0, FlushMode.AUTO, Compression.NONE, new byte[16],
                DEFAULT_MAX_RAM, Backing.anonymous(), DEFAULT_MAX_DEVICE_STATE, DEFAULT_MAX_VMDESC, null, ColoOptions.OFF, null);
    }

    public ReplicaConfig withMultifd(int channels) {
        return new ReplicaConfig(name, host, port, channels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, tls);
    }

    public ReplicaConfig withFlushMode(FlushMode mode) {
        return new ReplicaConfig(name, host, port, multifdChannels, mode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, tls);
    }

    public ReplicaConfig withCompression(Compression c) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, c, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, tls);
    }

    public ReplicaConfig withColo(ColoOptions c) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, c, tls);
    }

    public ReplicaConfig withPort(int p) {
        return new ReplicaConfig(name, host, p, multifdChannels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, tls);
    }

    public ReplicaConfig withLimits(long maxRam, long maxDeviceState, int maxVmdesc) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRam, backing,
                maxDeviceState, maxVmdesc, expectedMachine, coloOptions, tls);
    }

    public ReplicaConfig withUuid(byte[] u) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, u, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, tls);
    }

    public ReplicaConfig withBacking(Backing b) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRamBytes, b,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, tls);
    }

    /** TLS on this replica's port (null = plain TCP). */
    public ReplicaConfig withTls(TlsOptions t) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, coloOptions, t);
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

    /**
     * Reads a replica from its JSON config object (conf/ files, through Vert.x Config).
     * Unknown keys are rejected so a typo never silently means "default".
     */
    public static ReplicaConfig fromJson(JsonObject j) {
        java.util.Set<String> known = java.util.Set.of("name", "listen", "host", "port", "multifd-channels", "flush-mode",
                "multifd-compression", "uuid", "max-ram", "backing-dir", "max-device-state", "max-vmdesc", "machine", "colo",
                "x-checkpoint-delay", "heartbeat-timeout-ms", "flush-workers", "blob-limit", "digest-on-commit", "tls");
        for (String k : j.fieldNames()) {
            if (!known.contains(k)) {
                throw new IllegalArgumentException("unknown replica key '" + k + "'");
            }
        }
        String name = j.getString("name");
        if (name == null || name.isBlank()) {
            throw new IllegalArgumentException("replica needs a name");
        }
        String host = j.getString("host", "127.0.0.1");
        int port = j.getInteger("port", 0);
        if (j.containsKey("listen")) {
            HostPort hp = HostPort.parse(j.getString("listen"));
            host = hp.host();
            port = hp.port();
        }
        String dir = j.getString("backing-dir");
        long delay = j.getLong("x-checkpoint-delay", 20_000L);
        ColoOptions colo = new ColoOptions(j.getBoolean("colo", false), delay, j.getLong("heartbeat-timeout-ms", 3 * delay),
                j.getInteger("flush-workers", 2), Sizes.parse(j.getValue("blob-limit", 64L << 20)),
                j.getBoolean("digest-on-commit", false));
        return new ReplicaConfig(name, host, port,
                j.getInteger("multifd-channels", 0),
                FlushMode.parse(j.getString("flush-mode", "auto")),
                Compression.fromQemuName(j.getString("multifd-compression", "none")),
                parseUuid(j.getString("uuid")),
                Sizes.parse(j.getValue("max-ram", DEFAULT_MAX_RAM)),
                dir == null ? Backing.anonymous() : Backing.files(Path.of(dir)),
                Sizes.parse(j.getValue("max-device-state", DEFAULT_MAX_DEVICE_STATE)),
                (int) Sizes.parse(j.getValue("max-vmdesc", DEFAULT_MAX_VMDESC)),
                j.getString("machine"),
                colo,
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
                + " machine=" + expectedMachine + " colo=" + coloOptions + (tls == null ? "" : " " + tls);
    }
}
