package dev.multifdcolo.bench.loopback;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;

/**
 * CPU time of a Linux process and of its threads, from {@code /proc}. Clock ticks are converted
 * with USER_HZ = 100 (10 ms resolution: good enough for runs of a second or more).
 */
final class ProcCpu {
    private ProcCpu() {}

    static final long TICK_NANOS = 10_000_000L;

    /** User and system CPU time of a whole process, in nanoseconds, and its minor page faults. */
    record Sample(long userNanos, long sysNanos, long minorFaults) {
        static final Sample ZERO = new Sample(0, 0, 0);

        Sample minus(Sample o) {
            return new Sample(userNanos - o.userNanos, sysNanos - o.sysNanos, minorFaults - o.minorFaults);
        }

        long totalNanos() {
            return userNanos + sysNanos;
        }
    }

    /** The process's user/system time; ZERO if it cannot be read (not Linux, process gone). */
    static Sample process(long pid) {
        return read(Path.of("/proc", Long.toString(pid), "stat"));
    }

    static Sample self() {
        return process(ProcessHandle.current().pid());
    }

    private static Sample read(Path stat) {
        try {
            String s = Files.readString(stat);
            // comm may contain spaces and parentheses: fields start after the last ')'
            String[] f = s.substring(s.lastIndexOf(')') + 2).trim().split(" +");
            // after ')' : state(0) ppid(1) ... utime is field 14 overall -> index 11 here
            long minflt = Long.parseLong(f[7]);
            long ut = Long.parseLong(f[11]);
            long st = Long.parseLong(f[12]);
            return new Sample(ut * TICK_NANOS, st * TICK_NANOS, minflt);
        } catch (IOException | RuntimeException e) {
            return Sample.ZERO;
        }
    }

    /** Busy CPU time of the whole machine (all CPUs, everything but idle and iowait), from /proc/stat. */
    static long machineBusyNanos() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/stat"))) {
                if (line.startsWith("cpu ")) {
                    String[] f = line.trim().split(" +");
                    long busy = 0;
                    // user nice system idle iowait irq softirq steal
                    for (int i : new int[]{1, 2, 3, 6, 7, 8}) {
                        busy += Long.parseLong(f[i]);
                    }
                    return busy * TICK_NANOS;
                }
            }
        } catch (IOException | RuntimeException ignored) {
            // not Linux
        }
        return 0;
    }

    /**
     * CPU nanoseconds (user + system) of every thread of {@code pid}, keyed "comm#tid". Kernel
     * names are cut to 15 characters ("vert.x-eventloo"), so the tid keeps them apart.
     */
    static Map<String, Long> threads(long pid) {
        Map<String, Long> m = new TreeMap<>();
        Path task = Path.of("/proc", Long.toString(pid), "task");
        try (var dirs = Files.list(task)) {
            for (Path d : (Iterable<Path>) dirs::iterator) {
                try {
                    String comm = Files.readString(d.resolve("comm")).trim();
                    Sample s = read(d.resolve("stat"));
                    m.put(comm + "#" + d.getFileName(), s.totalNanos());
                } catch (IOException ignored) {
                    // thread ended meanwhile
                }
            }
        } catch (IOException ignored) {
            // no /proc
        }
        return m;
    }

    /**
     * Groups JVM-internal and kernel worker threads of a {@link #threads} map into categories
     * ("GC", "JIT", "VM", "io_uring workers"); Java threads are left out (callers get those, with
     * full names, from the ThreadMXBean).
     */
    static Map<String, Long> internalCategories(Map<String, Long> threads) {
        Map<String, Long> m = new TreeMap<>();
        for (Map.Entry<String, Long> e : threads.entrySet()) {
            String comm = e.getKey().substring(0, e.getKey().lastIndexOf('#'));
            String cat;
            if (comm.startsWith("GC Thread") || comm.startsWith("G1 ")) {
                cat = "[GC threads]";
            } else if (comm.startsWith("C2 Compiler") || comm.startsWith("C1 Compiler")) {
                cat = "[JIT compiler]";
            } else if (comm.startsWith("VM Thread") || comm.startsWith("VM Periodic")) {
                cat = "[VM thread]";
            } else if (comm.startsWith("iou-")) {
                cat = "[io_uring kernel workers]";
            } else {
                continue;
            }
            m.merge(cat, e.getValue(), Long::sum);
        }
        return m;
    }

    /** {@code after - before} per key (keys only in {@code after} count from zero). */
    static Map<String, Long> delta(Map<String, Long> after, Map<String, Long> before) {
        Map<String, Long> m = new TreeMap<>();
        after.forEach((k, v) -> m.put(k, v - before.getOrDefault(k, 0L)));
        return m;
    }
}
