package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;

/**
 * The real QEMU byte captures shipped as test resources (copied from shared/spec). Each set is a
 * main-channel file plus multifd channel files, and the guest RAM the source held.
 */
public record Captures(String name, String dir, String main, List<String> channels, Compression compression,
                       FlushMode flush, String blob) {

    /** 7.2 sources: legacy sync; 11.1: modern unless the compat settings were used. */
    public static List<Captures> all() {
        return List.of(
                new Captures("7.2 plain", "qemu-7.2", "plain.bin", List.of(), Compression.NONE, FlushMode.LEGACY, "blob5"),
                new Captures("7.2 multifd 2", "qemu-7.2", "mf_none_0.bin", List.of("mf_none_1.bin", "mf_none_2.bin"),
                        Compression.NONE, FlushMode.LEGACY, "blob5"),
                new Captures("7.2 multifd 2 zlib", "qemu-7.2", "mf_zlib_0.bin", List.of("mf_zlib_1.bin", "mf_zlib_2.bin"),
                        Compression.ZLIB, FlushMode.LEGACY, "blob300"),
                new Captures("7.2 multifd 2 zstd", "qemu-7.2", "mf_zstd_0.bin", List.of("mf_zstd_1.bin", "mf_zstd_2.bin"),
                        Compression.ZSTD, FlushMode.LEGACY, "blob300"),
                new Captures("11.1 plain", "qemu-11.1", "plain_0.bin", List.of(), Compression.NONE, FlushMode.MODERN, "blob5"),
                new Captures("11.1 plain with cpu", "qemu-11.1", "plain_cpu_0.bin", List.of(), Compression.NONE,
                        FlushMode.MODERN, "blob5"),
                new Captures("11.1 multifd 4", "qemu-11.1", "mf4_0.bin", files("mf4_", 4), Compression.NONE,
                        FlushMode.MODERN, "blob5"),
                new Captures("11.1 multifd 4 zstd", "qemu-11.1", "mf4_zstd_0.bin", files("mf4_zstd_", 4), Compression.ZSTD,
                        FlushMode.MODERN, "blob300"),
                new Captures("11.1 multifd 4 compat72", "qemu-11.1", "mf4_compat72_0.bin", files("mf4_compat72_", 4),
                        Compression.NONE, FlushMode.LEGACY, "blob5"));
    }

    private static List<String> files(String prefix, int n) {
        List<String> l = new ArrayList<>();
        for (int i = 1; i <= n; i++) {
            l.add(prefix + i + ".bin");
        }
        return l;
    }

    public byte[] mainBytes() {
        return load(dir + "/" + main);
    }

    public List<byte[]> channelBytes() {
        return channels.stream().map(c -> load(dir + "/" + c)).toList();
    }

    /** Expected guest RAM: the blob loaded at 0x1000 of a 16 MiB "ram" block. */
    public byte[] expectedRam() {
        byte[] ram = new byte[16 << 20];
        byte[] b = load(blob.equals("blob5") ? "qemu-7.2/guest-ram-blob-at-0x1000.bin" : "blob300.bin");
        System.arraycopy(b, 0, ram, 0x1000, b.length);
        return ram;
    }

    public ReplicaConfig config(String host, int port) {
        return ReplicaConfig.defaults(name.replace(' ', '-'), host, port).withMultifd(channels.size())
                .withCompression(compression).withFlushMode(flush);
    }

    public static byte[] load(String resource) {
        try (InputStream in = Captures.class.getResourceAsStream("/captures/" + resource)) {
            if (in == null) {
                throw new IllegalArgumentException("missing test resource " + resource);
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public String toString() {
        return name;
    }
}
