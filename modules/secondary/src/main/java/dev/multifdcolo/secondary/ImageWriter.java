package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.util.HexFormat;

/**
 * Writes a received image to a directory: one raw file per RAMBlock, the device sections as
 * received ({@code device-state.bin}), the source's VMDESCRIPTION ({@code vmdesc.json}), and a
 * {@code manifest.json} with block names, sizes and SHA-256 digests.
 */
public final class ImageWriter {
    private ImageWriter() {}

    public static JsonObject write(MigrationResult r, Path dir) throws IOException {
        Files.createDirectories(dir);
        JsonArray blocks = new JsonArray();
        GuestMemory m = r.memory();
        for (RamBlock b : m.blocks()) {
            String file = GuestMemory.fileName(b.name());
            try (FileChannel ch = FileChannel.open(dir.resolve(file), StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.TRUNCATE_EXISTING)) {
                var bb = b.guest().asByteBuffer();
                while (bb.hasRemaining()) {
                    ch.write(bb);
                }
            }
            blocks.add(new JsonObject().put("name", b.name()).put("file", file).put("size", b.length())
                    .put("sha256", GuestMemory.sha256(b.guest())));
        }
        Files.write(dir.resolve("device-state.bin"), r.deviceState());
        if (r.vmdesc() != null) {
            Files.writeString(dir.resolve("vmdesc.json"), r.vmdesc());
        }
        JsonObject manifest = new JsonObject()
                .put("replica", r.replica())
                .put("machine", r.machine())
                .put("blocks", blocks)
                .put("digest", m.digest())
                .put("colo", r.colo() == null ? null : new JsonObject().put("epoch", r.colo().epoch())
                        .put("failover-reason", r.colo().failoverReason()))
                .put("device-state", new JsonObject().put("file", "device-state.bin").put("size", r.deviceState().length)
                        .put("sha256", sha256(r.deviceState())))
                .put("stats", new JsonObject()
                        .put("bytes", r.stats().bytes.sum())
                        .put("normal-pages", r.stats().normalPages.sum())
                        .put("zero-pages", r.stats().zeroPages.sum())
                        .put("packets", r.stats().packets.sum())
                        .put("syncs", r.stats().syncs.sum()));
        Files.writeString(dir.resolve("manifest.json"), manifest.encodePrettily());
        return manifest;
    }

    static String sha256(byte[] data) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
