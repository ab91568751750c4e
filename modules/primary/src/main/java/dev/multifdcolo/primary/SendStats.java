package dev.multifdcolo.primary;

/**
 * A snapshot of one sender session's counters.
 *
 * @param phase          what the sender was doing when the snapshot was taken
 * @param mainBytes      bytes written on the main channel
 * @param multifdBytes   bytes written on all multifd channels (hellos, headers, payloads)
 * @param normalPages    non-zero pages sent (PAGE records or multifd normal pages)
 * @param zeroPages      zero pages sent (ZERO records or multifd zero entries)
 * @param packets        multifd packets written (data and SYNC)
 * @param syncs          sync rounds (one SYNC packet on every channel each)
 * @param iterations     RAM sections with pages (PART and END) sent so far
 * @param elapsedNanos   time since the session connected
 */
public record SendStats(String phase, long mainBytes, long multifdBytes, long normalPages, long zeroPages,
                        long packets, long syncs, int iterations, long elapsedNanos) {

    public long totalBytes() {
        return mainBytes + multifdBytes;
    }

    public long pages() {
        return normalPages + zeroPages;
    }

    public double elapsedSeconds() {
        return elapsedNanos / 1e9;
    }

    /** Wire bytes per second over the whole session. */
    public double bytesPerSecond() {
        return elapsedNanos <= 0 ? 0 : totalBytes() / elapsedSeconds();
    }

    /** Guest bytes covered (pages × 4096) per second. */
    public double guestBytesPerSecond() {
        return elapsedNanos <= 0 ? 0 : pages() * 4096.0 / elapsedSeconds();
    }

    /** One line for logs and the CLI. */
    public String summary() {
        return String.format("%s: %s sent (main %s, multifd %s), pages %d normal + %d zero, %d packets, "
                        + "%d syncs, %.3f s, %s/s wire, %s/s guest",
                phase, human(totalBytes()), human(mainBytes), human(multifdBytes), normalPages, zeroPages,
                packets, syncs, elapsedSeconds(), human((long) bytesPerSecond()), human((long) guestBytesPerSecond()));
    }

    /** "1.5 MiB" style. */
    public static String human(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format("%.1f %s", v, units[u]);
    }
}
