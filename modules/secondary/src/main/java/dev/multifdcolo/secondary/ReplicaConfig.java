package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.Backing;
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
        boolean colo) {

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
                DEFAULT_MAX_RAM, Backing.anonymous(), DEFAULT_MAX_DEVICE_STATE, DEFAULT_MAX_VMDESC, null, false);
    }

    public ReplicaConfig withMultifd(int channels) {
        return new ReplicaConfig(name, host, port, channels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, colo);
    }

    public ReplicaConfig withFlushMode(FlushMode mode) {
        return new ReplicaConfig(name, host, port, multifdChannels, mode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, colo);
    }

    public ReplicaConfig withCompression(Compression c) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, c, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, colo);
    }

    public ReplicaConfig withPort(int p) {
        return new ReplicaConfig(name, host, p, multifdChannels, flushMode, compression, uuid, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, colo);
    }

    public ReplicaConfig withLimits(long maxRam, long maxDeviceState, int maxVmdesc) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRam, backing,
                maxDeviceState, maxVmdesc, expectedMachine, colo);
    }

    public ReplicaConfig withUuid(byte[] u) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, u, maxRamBytes, backing,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, colo);
    }

    public ReplicaConfig withBacking(Backing b) {
        return new ReplicaConfig(name, host, port, multifdChannels, flushMode, compression, uuid, maxRamBytes, b,
                maxDeviceStateBytes, maxVmdescBytes, expectedMachine, colo);
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
                "x-checkpoint-delay", "heartbeat-timeout-ms", "flush-workers", "blob-limit");
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
                j.getBoolean("colo", false));
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
                + " machine=" + expectedMachine + " colo=" + colo;
    }
}
