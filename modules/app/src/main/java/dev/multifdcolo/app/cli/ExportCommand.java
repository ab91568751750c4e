package dev.multifdcolo.app.cli;

import dev.multifdcolo.primary.SendStats;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.export.ExportImage;
import dev.multifdcolo.primary.export.Exporter;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code export}: hand an image (a replica's last committed COLO checkpoint, or a precopy image)
 * written by the receiver ({@code ImageWriter}: block files, device-state.bin, vmdesc.json,
 * manifest.json) back to a real QEMU started with the source's machine options: as a stream file
 * ({@code --out FILE}, loaded with {@code -incoming "exec:cat FILE"} or {@code migrate-incoming
 * exec:cat FILE}) or live ({@code --connect HOST:PORT} to {@code -incoming tcp:…}).
 * Exit codes: 0 written / sent (with the return path: loaded, SHUT(0)); 1 the migration failed;
 * 2 bad arguments or image.
 */
@Command(name = "export", mixinStandardHelpOptions = true,
        description = "Hand a replica's image (last committed checkpoint) back to a real QEMU: a migration stream"
                + " file (--out) or a live migration (--connect) to a QEMU started with -incoming.")
public final class ExportCommand implements Callable<Integer> {

    @Option(names = "--image", required = true, paramLabel = "DIR", description = "image directory written by the receiver")
    Path image;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Target target;

    static final class Target {
        @Option(names = "--out", paramLabel = "FILE", description = "write the stream to FILE (plain precopy); '-' ="
                + " standard output, for -incoming \"exec:java -jar multifd-colo.jar export --image DIR --out -\"")
        Path out;

        @Option(names = "--connect", paramLabel = "HOST:PORT", description = "send it live to a QEMU listening there")
        String connect;
    }

    @Option(names = "--multifd-channels", defaultValue = "0",
            description = "--connect: multifd channels as the destination expects, 0 = plain (default ${DEFAULT-VALUE})")
    int channels;

    @Option(names = "--multifd-compression", defaultValue = "none", description = "--connect: none, zlib or zstd (default ${DEFAULT-VALUE})")
    String compression;

    @Option(names = "--framing", defaultValue = "modern",
            description = "legacy (QEMU 7.2 destination) or modern (8.1+/11.1) (default ${DEFAULT-VALUE})")
    String framing;

    @Option(names = "--no-return-path", description = "--connect: do not open the return path (then success means"
            + " 'sent', not 'loaded')")
    boolean noReturnPath;

    @Option(names = "--machine", description = "override the machine type of the manifest")
    String machine;

    @Option(names = "--shut-timeout", defaultValue = "60", description = "seconds to wait for the destination's SHUT (default ${DEFAULT-VALUE})")
    long shutTimeout;

    @Override
    public Integer call() {
        PrintStream err = System.err;
        Framing f;
        SenderConfig cfg = null;
        try {
            f = framing(framing);
            if (target.connect != null) {
                cfg = config(target.connect, f);
            } else if (channels != 0) {
                throw new IllegalArgumentException("--multifd-channels needs --connect (a file stream is plain)");
            }
        } catch (IllegalArgumentException e) {
            err.println("error: " + e.getMessage());
            return 2;
        }
        ExportImage img;
        try {
            img = load(image);
            if (machine != null) {
                img = new ExportImage(machine, img.memory(), img.deviceSections(), img.vmdesc(), img.epoch());
            }
        } catch (IOException | IllegalArgumentException e) {
            err.println("error: " + e.getMessage());
            return 2;
        }
        String what = String.format(Locale.ROOT, "%s (%s, machine %s, %d device-state bytes)",
                img.epoch() < 0 ? "precopy image" : "COLO checkpoint " + img.epoch(),
                SendStats.human(img.memory().totalBytes()), img.machine(), img.deviceSections().length);
        try (var mem = img.memory()) {
            if (target.out != null && target.out.toString().equals("-")) {
                System.out.flush();
                Exporter.Stats st = Exporter.write(img, java.nio.channels.Channels.newChannel(System.out), f);
                System.out.flush();
                err.println("exported " + what + " to standard output: " + st.summary());
            } else if (target.out != null) {
                Exporter.Stats st = Exporter.toFile(img, target.out, f);
                System.out.println("exported " + what + " to " + target.out + ": " + st.summary());
                System.out.println("load it with: -incoming \"exec:cat " + target.out.toAbsolutePath() + "\"");
            } else {
                SendStats st = Exporter.live(img, cfg);
                System.out.println("exported " + what + " to " + target.connect + ": " + st.summary());
            }
            return 0;
        } catch (IOException | RuntimeException e) {
            err.println("error: " + String.valueOf(e.getMessage()).replace('\n', ' '));
            return 1;
        }
    }

    private SenderConfig config(String hostPort, Framing f) {
        int colon = hostPort.lastIndexOf(':');
        if (colon <= 0) {
            throw new IllegalArgumentException("--connect needs HOST:PORT, got " + hostPort);
        }
        int port;
        try {
            port = Integer.parseInt(hostPort.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad port in " + hostPort);
        }
        return SenderConfig.builder(hostPort.substring(0, colon), port).framing(f).multifd(channels)
                .compression(Compression.fromQemuName(compression)).returnPath(!noReturnPath)
                .shutTimeout(Duration.ofSeconds(shutTimeout)).build();
    }

    static Framing framing(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "legacy" -> Framing.LEGACY;
            case "modern" -> Framing.MODERN;
            default -> throw new IllegalArgumentException("--framing is legacy or modern, got " + s);
        };
    }

    /**
     * Loads an image directory written by {@code ImageWriter}: the blocks of manifest.json (raw
     * files), device-state.bin, vmdesc.json when present, the machine type and the COLO epoch
     * (-1 for a precopy image). The caller closes the image's memory.
     */
    public static ExportImage load(Path dir) throws IOException {
        JsonObject m;
        try {
            m = new JsonObject(Files.readString(dir.resolve("manifest.json")));
        } catch (NoSuchFileException e) {
            throw new IOException(dir + " is not an image directory (no manifest.json)");
        } catch (DecodeException e) {
            throw new IOException(dir.resolve("manifest.json") + ": " + e.getMessage());
        }
        String mt = m.getString("machine");
        if (mt == null || mt.isEmpty()) {
            throw new IOException("manifest.json names no machine type");
        }
        JsonArray bl = m.getJsonArray("blocks");
        if (bl == null || bl.isEmpty()) {
            throw new IOException("manifest.json lists no blocks");
        }
        List<ExportImage.BlockFile> blocks = new ArrayList<>();
        for (int i = 0; i < bl.size(); i++) {
            JsonObject b = bl.getJsonObject(i);
            blocks.add(new ExportImage.BlockFile(b.getString("name"), dir.resolve(b.getString("file")), b.getLong("size")));
        }
        JsonObject ds = m.getJsonObject("device-state");
        byte[] dev = Files.readAllBytes(dir.resolve(ds == null ? "device-state.bin" : ds.getString("file", "device-state.bin")));
        Path vd = dir.resolve("vmdesc.json");
        String vmdesc = Files.exists(vd) ? Files.readString(vd) : null;
        JsonObject colo = m.getJsonObject("colo");
        long epoch = colo == null ? -1 : colo.getLong("epoch", -1L);
        return ExportImage.load(mt, blocks, dev, vmdesc, epoch);
    }

    /** The image of a finished migration or a failed-over replica (memory shared, not copied). */
    public static ExportImage of(MigrationResult r) {
        return ExportImage.of(r.machine(), r.memory(), r.deviceState(), r.vmdesc(),
                r.colo() == null ? -1 : r.colo().epoch());
    }
}
