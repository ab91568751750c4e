package dev.multifdcolo.bench.colo;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** CPU accounting from /proc, for the "how busy was the machine" columns of the COLO benches. */
final class ProcStat {
    private ProcStat() {
    }

    /** {busy ticks, total ticks} of the whole machine from /proc/stat ({0, 0} when unreadable). */
    static long[] machineCpu() {
        try {
            String[] f = Files.readAllLines(Path.of("/proc/stat")).getFirst().trim().split("\\s+");
            long total = 0;
            long idle = 0;
            for (int i = 1; i < f.length && i <= 8; i++) {
                long v = Long.parseLong(f[i]);
                total += v;
                if (i == 4 || i == 5) {
                    idle += v;
                }
            }
            return new long[] {total - idle, total};
        } catch (IOException | RuntimeException e) {
            return new long[] {0, 0};
        }
    }

    /** user + system CPU nanoseconds of a process (10 ms ticks; 0 when unreadable). */
    static long procCpu(long pid) {
        try {
            String s = Files.readString(Path.of("/proc/" + pid + "/stat"));
            String[] f = s.substring(s.lastIndexOf(')') + 2).split(" ");
            return (Long.parseLong(f[11]) + Long.parseLong(f[12])) * 10_000_000L;
        } catch (IOException | RuntimeException e) {
            return 0;
        }
    }
}
