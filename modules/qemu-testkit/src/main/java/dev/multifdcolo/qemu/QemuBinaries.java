package dev.multifdcolo.qemu;

import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Locates the two QEMU versions the interop tests run against.
 *
 * <ul>
 *   <li>7.2: {@code $MFC_QEMU72}, else {@code /usr/bin/qemu-system-x86_64} (Debian 12's package)</li>
 *   <li>11.1: {@code $MFC_QEMU11}, else {@code $QEMU11_BASE/bin/qemu-system-x86_64}
 *       (default base {@code /opt/qemu11}, as provisioned by {@code src/scripts/get-qemu11.sh})</li>
 * </ul>
 * A candidate only counts if its {@code --version} reports the expected version. Results are
 * computed once per JVM. {@code assume*} skip the calling test when the version is missing, or
 * fail it when {@code $MFC_REQUIRE_QEMU} is {@code 1}/{@code true} (as in CI, where a skip would
 * hide a broken install step).
 */
public final class QemuBinaries {

    public static final String ENV_QEMU72 = "MFC_QEMU72";
    public static final String ENV_QEMU11 = "MFC_QEMU11";
    public static final String ENV_QEMU11_BASE = "QEMU11_BASE";
    /** When "1" or "true" (CI sets it), a missing QEMU fails the test instead of skipping it. */
    public static final String ENV_REQUIRE = "MFC_REQUIRE_QEMU";
    public static final Path DEFAULT_QEMU72 = Path.of("/usr/bin/qemu-system-x86_64");
    public static final Path DEFAULT_QEMU11_BASE = Path.of("/opt/qemu11");

    private static final Pattern VERSION = Pattern.compile("QEMU emulator version (\\d+\\.\\d+(?:\\.\\d+)?)");

    private record Lookup(Optional<QemuBinary> binary, String reason) {
    }

    private static final class V72 {
        static final Lookup LOOKUP = find("7.2", ENV_QEMU72, DEFAULT_QEMU72);
    }

    private static final class V111 {
        static final Lookup LOOKUP = find("11.1", ENV_QEMU11, qemu11Default());
    }

    private QemuBinaries() {
    }

    /** QEMU 7.2, if installed. */
    public static Optional<QemuBinary> qemu72() {
        return V72.LOOKUP.binary();
    }

    /** QEMU 11.1, if installed. */
    public static Optional<QemuBinary> qemu111() {
        return V111.LOOKUP.binary();
    }

    /** QEMU 7.2, or aborts the calling JUnit test (skipped, not failed) with "QEMU 7.2 not found: ...". */
    public static QemuBinary assume72() {
        return assume("7.2", V72.LOOKUP);
    }

    /** QEMU 11.1, or aborts the calling JUnit test with "QEMU 11.1 not found: ...". */
    public static QemuBinary assume111() {
        return assume("11.1", V111.LOOKUP);
    }

    /** Why 7.2 was not found (empty if it was). */
    public static String whyNot72() {
        return V72.LOOKUP.binary().isPresent() ? "" : V72.LOOKUP.reason();
    }

    /** Why 11.1 was not found (empty if it was). */
    public static String whyNot111() {
        return V111.LOOKUP.binary().isPresent() ? "" : V111.LOOKUP.reason();
    }

    /**
     * Runs {@code executable --version} and parses the version. Empty if the file is not
     * executable, the run fails or takes over 20 s, or the output has no QEMU version.
     */
    public static Optional<QemuBinary> probe(Path executable) {
        try {
            return Optional.of(probeOrExplain(executable));
        } catch (IOException e) {
            return Optional.empty();
        }
    }

    private static QemuBinary probeOrExplain(Path executable) throws IOException {
        if (!Files.isRegularFile(executable)) {
            throw new IOException(executable + " does not exist");
        }
        if (!Files.isExecutable(executable)) {
            throw new IOException(executable + " is not executable");
        }
        Path out = Files.createTempFile("qemu-version-", ".txt");
        Process p = new ProcessBuilder(executable.toString(), "--version")
                .redirectErrorStream(true)
                .redirectOutput(out.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .start();
        try {
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                throw new IOException(executable + " --version did not finish within 20 s");
            }
            String text = Files.readString(out, StandardCharsets.ISO_8859_1);
            Matcher m = VERSION.matcher(text);
            if (p.exitValue() != 0 || !m.find()) {
                throw new IOException(executable + " --version exited " + p.exitValue() + ": " + text.strip());
            }
            String banner = text.lines().filter(l -> l.contains("QEMU emulator version")).findFirst().orElse(text);
            return new QemuBinary(executable, m.group(1), banner.strip());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        } finally {
            p.destroyForcibly();
            Files.deleteIfExists(out);
        }
    }

    private static Path qemu11Default() {
        String base = System.getenv(ENV_QEMU11_BASE);
        Path dir = base == null || base.isBlank() ? DEFAULT_QEMU11_BASE : Path.of(base);
        return dir.resolve("bin/qemu-system-x86_64");
    }

    private static Lookup find(String wanted, String envName, Path fallback) {
        String fromEnv = System.getenv(envName);
        Path candidate = fromEnv == null || fromEnv.isBlank() ? fallback : Path.of(fromEnv);
        String origin = fromEnv == null || fromEnv.isBlank() ? "" : " (from $" + envName + ")";
        try {
            QemuBinary binary = probeOrExplain(candidate);
            if (!binary.isVersion(wanted)) {
                return new Lookup(Optional.empty(), candidate + origin + " is QEMU " + binary.version()
                        + ", not " + wanted + hint(envName));
            }
            return new Lookup(Optional.of(binary), "");
        } catch (IOException e) {
            return new Lookup(Optional.empty(), e.getMessage() + origin + hint(envName));
        }
    }

    private static String hint(String envName) {
        return ENV_QEMU72.equals(envName)
                ? "; install Debian 12's qemu-system-x86 or set " + ENV_QEMU72
                : "; run src/scripts/get-qemu11.sh (QEMU11_BASE, default /opt/qemu11) or set " + ENV_QEMU11;
    }

    private static QemuBinary assume(String version, Lookup lookup) {
        if (lookup.binary().isEmpty() && required()) {
            throw new AssertionError("QEMU " + version + " not found: " + lookup.reason() + " (and $"
                    + ENV_REQUIRE + " is set, so this fails instead of skipping)");
        }
        Assumptions.assumeTrue(lookup.binary().isPresent(), () -> "QEMU " + version + " not found: " + lookup.reason());
        return lookup.binary().orElseThrow();
    }

    private static boolean required() {
        String v = System.getenv(ENV_REQUIRE);
        return v != null && (v.equals("1") || v.equalsIgnoreCase("true"));
    }
}
