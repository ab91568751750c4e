package dev.multifdcolo.qemu;

import java.nio.file.Path;
import java.util.Objects;

/**
 * A QEMU system emulator executable together with the version it reported.
 *
 * @param executable the file that is started (may be a wrapper script that {@code exec}s QEMU)
 * @param version    the dotted version from {@code --version}, e.g. {@code "7.2.22"} or {@code "11.1.3"}
 * @param banner     the complete first line of {@code --version}
 */
public record QemuBinary(Path executable, String version, String banner) {

    public QemuBinary {
        Objects.requireNonNull(executable, "executable");
        Objects.requireNonNull(version, "version");
        Objects.requireNonNull(banner, "banner");
    }

    /** True when the version is {@code prefix} itself or starts with {@code prefix + "."} ("7.2" matches "7.2.22"). */
    public boolean isVersion(String prefix) {
        return version.equals(prefix) || version.startsWith(prefix + ".");
    }

    /** Major version number (7 for 7.2.22). */
    public int major() {
        return Integer.parseInt(version.split("\\.")[0]);
    }

    /** Minor version number (2 for 7.2.22). */
    public int minor() {
        String[] parts = version.split("\\.");
        return parts.length > 1 ? Integer.parseInt(parts[1]) : 0;
    }

    @Override
    public String toString() {
        return "QEMU " + version + " (" + executable + ")";
    }
}
