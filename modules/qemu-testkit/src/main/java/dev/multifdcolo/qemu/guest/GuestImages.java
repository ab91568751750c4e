package dev.multifdcolo.qemu.guest;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * Finds the unpatched dirty-guest image: built from {@code src/guest/dirty.S} with binutils when
 * they are installed, otherwise the committed {@code src/guest/dirty.bin}.
 *
 * <p>Order:
 * <ol>
 *   <li>system property {@value #IMAGE_PROPERTY}: read that file as is;</li>
 *   <li>the guest source directory: system property {@value #SOURCE_PROPERTY}, else the first
 *       {@code src/guest} holding {@code dirty.S} in the working directory or one of its parents
 *       (the repository root, when run from a module);</li>
 *   <li>if {@code as} and {@code ld} are on the PATH: {@code build.sh} into
 *       {@code $TMPDIR/mfc-dirty-guest/<hash of dirty.S and build.sh>/} (reused when present);</li>
 *   <li>otherwise the committed {@code dirty.bin} next to the source.</li>
 * </ol>
 */
public final class GuestImages {

    /** A prebuilt image to use instead of building (path to a 64 KiB file). */
    public static final String IMAGE_PROPERTY = "mfc.guest.image";
    /** The directory holding {@code dirty.S}, {@code build.sh} and {@code dirty.bin}. */
    public static final String SOURCE_PROPERTY = "mfc.guest.src";

    private static final long BUILD_TIMEOUT_SECONDS = 60;

    /** An image and where it came from (for messages). */
    public record Image(byte[] bytes, String origin) {
        public Image {
            bytes = bytes.clone();
        }

        @Override
        public byte[] bytes() {
            return bytes.clone();
        }
    }

    private static volatile Image cached;

    private GuestImages() {
    }

    /** The unpatched image (located, and built if possible, once per JVM). */
    public static Image image() {
        Image image = cached;
        if (image == null) {
            synchronized (GuestImages.class) {
                image = cached;
                if (image == null) {
                    try {
                        image = locate();
                    } catch (IOException e) {
                        throw new UncheckedIOException("dirty guest image: " + e.getMessage(), e);
                    }
                    cached = image;
                }
            }
        }
        return image;
    }

    /** The guest source directory ({@code src/guest}), if it can be found. */
    public static Optional<Path> sourceDir() {
        String configured = System.getProperty(SOURCE_PROPERTY);
        if (configured != null && !configured.isBlank()) {
            Path dir = Path.of(configured).toAbsolutePath();
            return Files.isRegularFile(dir.resolve("dirty.S")) ? Optional.of(dir) : Optional.empty();
        }
        for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
            Path candidate = dir.resolve("src").resolve("guest");
            if (Files.isRegularFile(candidate.resolve("dirty.S"))) {
                return Optional.of(candidate);
            }
        }
        return Optional.empty();
    }

    /** True if {@code as} and {@code ld} are on the PATH. */
    public static boolean binutilsAvailable() {
        return onPath("as").isPresent() && onPath("ld").isPresent();
    }

    /**
     * Builds the image from {@code sourceDir} with {@code build.sh} into a cache directory keyed
     * by the source's hash, unless it is already there, and returns the file.
     */
    public static Path build(Path sourceDir) throws IOException {
        Path script = sourceDir.resolve("build.sh");
        String hash = sourceHash(sourceDir);
        Path out = Path.of(System.getProperty("java.io.tmpdir"), "mfc-dirty-guest", hash);
        Path bin = out.resolve("dirty.bin");
        if (Files.isRegularFile(bin) && Files.size(bin) == DirtyGuest.IMAGE_SIZE) {
            return bin;
        }
        Files.createDirectories(out);
        Path log = out.resolve("build.log");
        Process p = new ProcessBuilder("sh", script.toString(), out.toString())
                .redirectErrorStream(true)
                .redirectOutput(log.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                .start();
        try {
            if (!p.waitFor(BUILD_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException(script + " did not finish within " + BUILD_TIMEOUT_SECONDS + " s");
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while running " + script, e);
        }
        if (p.exitValue() != 0 || !Files.isRegularFile(bin)) {
            throw new IOException(script + " failed (exit " + p.exitValue() + "): "
                    + Files.readString(log, StandardCharsets.UTF_8).strip());
        }
        return bin;
    }

    private static Image locate() throws IOException {
        String explicit = System.getProperty(IMAGE_PROPERTY);
        if (explicit != null && !explicit.isBlank()) {
            Path file = Path.of(explicit);
            return new Image(read(file), file.toAbsolutePath() + " (-D" + IMAGE_PROPERTY + ")");
        }
        Optional<Path> source = sourceDir();
        if (source.isEmpty()) {
            throw new IOException("src/guest/dirty.S not found in " + Path.of("").toAbsolutePath()
                    + " or its parents; set -D" + SOURCE_PROPERTY + "=<dir> or -D" + IMAGE_PROPERTY + "=<file>");
        }
        Path dir = source.get();
        Path prebuilt = dir.resolve("dirty.bin");
        if (binutilsAvailable()) {
            Path built = build(dir);
            return new Image(read(built), built + " (built from " + dir.resolve("dirty.S") + ")");
        }
        if (!Files.isRegularFile(prebuilt)) {
            throw new IOException("no binutils (as, ld) and no prebuilt " + prebuilt);
        }
        return new Image(read(prebuilt), prebuilt + " (prebuilt; binutils not found)");
    }

    private static byte[] read(Path file) throws IOException {
        byte[] bytes = Files.readAllBytes(file);
        if (bytes.length != DirtyGuest.IMAGE_SIZE) {
            throw new IOException(file + " is " + bytes.length + " bytes, expected " + DirtyGuest.IMAGE_SIZE);
        }
        return bytes;
    }

    private static String sourceHash(Path dir) throws IOException {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            for (String name : List.of("dirty.S", "build.sh")) {
                sha.update(name.getBytes(StandardCharsets.UTF_8));
                sha.update(Files.readAllBytes(dir.resolve(name)));
            }
            return HexFormat.of().formatHex(sha.digest(), 0, 12);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static Optional<Path> onPath(String tool) {
        String path = System.getenv("PATH");
        if (path == null) {
            return Optional.empty();
        }
        for (String entry : path.split(File.pathSeparator)) {
            if (entry.isEmpty()) {
                continue;
            }
            Path candidate = Path.of(entry, tool);
            if (Files.isRegularFile(candidate) && Files.isExecutable(candidate)) {
                return Optional.of(candidate);
            }
        }
        return Optional.empty();
    }
}
