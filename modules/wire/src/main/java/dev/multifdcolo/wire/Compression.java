package dev.multifdcolo.wire;

import java.util.Locale;

/** multifd-compression methods we speak, with their packet flag bits (§3.4, §6). */
public enum Compression {
    NONE(0x00),
    ZLIB(0x02),
    ZSTD(0x04);

    /** Value of the compression bits in a packet's flags. */
    public final int flagBits;

    Compression(int flagBits) {
        this.flagBits = flagBits;
    }

    /** QEMU's name ("none", "zlib", "zstd"). */
    public String qemuName() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static Compression fromQemuName(String name) {
        for (Compression c : values()) {
            if (c.qemuName().equals(name)) {
                return c;
            }
        }
        throw new IllegalArgumentException("unknown multifd-compression '" + name + "' (none, zlib, zstd)");
    }
}
