package dev.multifdcolo.primary;

import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.encode.NoneMachine;

import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Objects;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * How a {@link MigrationSender} talks to its destination. Nothing here is negotiated on the wire:
 * the destination QEMU must be configured to match (capabilities {@code multifd} /
 * {@code return-path}, parameters {@code multifd-channels} / {@code multifd-compression}, and for a
 * modern destination its flush mode and zero-page detection).
 *
 * @param address           destination HOST:PORT (all channels connect there)
 * @param framing           LEGACY (QEMU 7.2 shape) or MODERN (8.1+/11.1 defaults)
 * @param multifdChannels   0 = plain precopy (pages on the main channel), else 1..255 channels
 * @param compression       multifd compression (ignored without multifd)
 * @param zlibLevel         0..9, QEMU default 1
 * @param zstdLevel         0..20, QEMU default 1
 * @param returnPath        send OPEN_RETURN_PATH + PING(1), read PONG/SHUT, finish only after SHUT(0)
 * @param uuid              16-byte VM UUID for the multifd hellos (all zero = no {@code -uuid})
 * @param machine           machine type name for the CONFIGURATION record
 * @param devices           the {@code -M none} device sections and vmdesc to send
 * @param socketSendBuffer  SO_SNDBUF for every socket
 * @param connectTimeout    per-connection connect timeout
 * @param shutTimeout       how long to wait for the destination's SHUT after the stream
 * @param stallTimeout      fail when no byte could be written for this long while sending (a
 *                          destination that stopped reading: typically a framing or capability
 *                          mismatch, which QEMU does not detect); null or zero = wait forever
 * @param queueDepth        packets queued per multifd channel
 * @param progress          called on the sending thread with a fresh snapshot (may be null)
 * @param progressInterval  minimum time between two progress calls inside a section
 * @param enableColo        send COMMAND ENABLE_COLO after the configuration (a QEMU 7.2 COLO
 *                          primary does; 11.1 never sends it and rejects it, QEMU-11.1-NOTES §6)
 */
public record SenderConfig(InetSocketAddress address, Framing framing, int multifdChannels, Compression compression,
                           int zlibLevel, int zstdLevel, boolean returnPath, byte[] uuid, String machine,
                           NoneMachine devices, int socketSendBuffer, Duration connectTimeout, Duration shutTimeout,
                           Duration stallTimeout, int queueDepth, Consumer<SendStats> progress, Duration progressInterval,
                           boolean enableColo) {

    public SenderConfig {
        Objects.requireNonNull(address, "address");
        Objects.requireNonNull(framing, "framing");
        Objects.requireNonNull(compression, "compression");
        Objects.requireNonNull(machine, "machine");
        Objects.requireNonNull(devices, "devices");
        if (multifdChannels < 0 || multifdChannels > 255) {
            throw new IllegalArgumentException("multifd channels must be 0 (off) or 1..255");
        }
        if (zlibLevel < 0 || zlibLevel > 9) {
            throw new IllegalArgumentException("zlib level must be 0..9");
        }
        if (zstdLevel < 0 || zstdLevel > 20) {
            throw new IllegalArgumentException("zstd level must be 0..20");
        }
        if (uuid == null || uuid.length != 16) {
            throw new IllegalArgumentException("uuid must be 16 bytes");
        }
        if (queueDepth < 1) {
            throw new IllegalArgumentException("queue depth must be >= 1");
        }
        uuid = uuid.clone();
    }

    @Override
    public byte[] uuid() {
        return uuid.clone();
    }

    public boolean multifd() {
        return multifdChannels > 0;
    }

    /** The compression level for the configured method. */
    public int compressionLevel() {
        return switch (compression) {
            case ZLIB -> zlibLevel;
            case ZSTD -> zstdLevel;
            case NONE -> 0;
        };
    }

    /** Parses "00112233-4455-6677-8899-aabbccddeeff" into the 16 bytes QEMU puts in the hello. */
    public static byte[] uuidBytes(String text) {
        UUID u = UUID.fromString(text);
        byte[] b = new byte[16];
        long hi = u.getMostSignificantBits();
        long lo = u.getLeastSignificantBits();
        for (int i = 0; i < 8; i++) {
            b[i] = (byte) (hi >>> (56 - 8 * i));
            b[8 + i] = (byte) (lo >>> (56 - 8 * i));
        }
        return b;
    }

    public static Builder builder(String host, int port) {
        return new Builder(new InetSocketAddress(host, port));
    }

    public static Builder builder(InetSocketAddress address) {
        return new Builder(address);
    }

    public Builder toBuilder() {
        Builder b = new Builder(address);
        b.framing = framing;
        b.multifdChannels = multifdChannels;
        b.compression = compression;
        b.zlibLevel = zlibLevel;
        b.zstdLevel = zstdLevel;
        b.returnPath = returnPath;
        b.uuid = uuid.clone();
        b.machine = machine;
        b.devices = devices;
        b.socketSendBuffer = socketSendBuffer;
        b.connectTimeout = connectTimeout;
        b.shutTimeout = shutTimeout;
        b.stallTimeout = stallTimeout;
        b.queueDepth = queueDepth;
        b.progress = progress;
        b.progressInterval = progressInterval;
        b.enableColo = enableColo;
        return b;
    }

    /** Defaults: MODERN, plain, compression none at level 1, no return path, zero UUID, "none". */
    public static final class Builder {
        private final InetSocketAddress address;
        private Framing framing = Framing.MODERN;
        private int multifdChannels;
        private Compression compression = Compression.NONE;
        private int zlibLevel = 1;
        private int zstdLevel = 1;
        private boolean returnPath;
        private byte[] uuid = new byte[16];
        private String machine = "none";
        private NoneMachine devices;
        private int socketSendBuffer = 1 << 20;
        private Duration connectTimeout = Duration.ofSeconds(10);
        private Duration shutTimeout = Duration.ofSeconds(30);
        private Duration stallTimeout = Duration.ofSeconds(30);
        private int queueDepth = 2;
        private Consumer<SendStats> progress;
        private Duration progressInterval = Duration.ofMillis(500);
        private boolean enableColo;

        private Builder(InetSocketAddress address) {
            this.address = address;
        }

        public Builder framing(Framing f) { this.framing = f; return this; }
        public Builder multifd(int channels) { this.multifdChannels = channels; return this; }
        public Builder plain() { this.multifdChannels = 0; return this; }
        public Builder compression(Compression c) { this.compression = c; return this; }
        public Builder zlibLevel(int l) { this.zlibLevel = l; return this; }
        public Builder zstdLevel(int l) { this.zstdLevel = l; return this; }
        public Builder returnPath(boolean on) { this.returnPath = on; return this; }
        public Builder uuid(byte[] u) { this.uuid = u.clone(); return this; }
        public Builder uuid(String u) { this.uuid = uuidBytes(u); return this; }
        public Builder machine(String m) { this.machine = m; return this; }
        /** Device sections; default: {@link NoneMachine#of} with the flavor matching the framing. */
        public Builder devices(NoneMachine d) { this.devices = d; return this; }
        public Builder socketSendBuffer(int bytes) { this.socketSendBuffer = bytes; return this; }
        public Builder connectTimeout(Duration d) { this.connectTimeout = d; return this; }
        public Builder shutTimeout(Duration d) { this.shutTimeout = d; return this; }
        public Builder stallTimeout(Duration d) { this.stallTimeout = d; return this; }
        public Builder queueDepth(int d) { this.queueDepth = d; return this; }
        public Builder progress(Consumer<SendStats> p) { this.progress = p; return this; }
        public Builder progressInterval(Duration d) { this.progressInterval = d; return this; }
        /** Send ENABLE_COLO (cmd 8) after the configuration: the QEMU 7.2 COLO primary's stream. */
        public Builder enableColo(boolean on) { this.enableColo = on; return this; }

        public SenderConfig build() {
            NoneMachine dev = devices != null ? devices
                    : NoneMachine.of(framing == Framing.LEGACY ? NoneMachine.Flavor.QEMU_7_2 : NoneMachine.Flavor.QEMU_11_1);
            return new SenderConfig(address, framing, multifdChannels, compression, zlibLevel, zstdLevel, returnPath,
                    uuid, machine, dev, socketSendBuffer, connectTimeout, shutTimeout, stallTimeout, queueDepth, progress,
                    progressInterval, enableColo);
        }
    }
}
