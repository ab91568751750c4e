package dev.multifdcolo.bench.loopback;

import dev.multifdcolo.bench.loopback.LoopbackBench.Options;
import dev.multifdcolo.bench.loopback.LoopbackBench.Run;
import dev.multifdcolo.primary.SendStats;
import dev.multifdcolo.wire.Compression;

import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.ToDoubleFunction;
import java.util.stream.Collectors;

/** The Markdown report of a {@link LoopbackBench} session. */
final class Report {
    private Report() {}

    static final double TARGET = 0.85;

    static String markdown(Options opt, List<Run> runs, String transport, int loops, String digest) {
        Map<Cell, List<Run>> byCell = new LinkedHashMap<>();
        for (Cell c : opt.cells) {
            byCell.put(c, runs.stream().filter(r -> r.cell().equals(c)).toList());
        }
        long ram = opt.ram;
        StringBuilder sb = new StringBuilder();
        String date = ZonedDateTime.now().format(DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm z"));
        sb.append("# Loopback benchmark: sender -> receiver vs raw sink (").append(date).append(")\n\n");
        sb.append("- Command: `java ").append(opt.jvmFlagsOfThisJvm())
                .append(" -cp ").append(System.getProperty("java.class.path")).append(" ").append(LoopbackBench.class.getName())
                .append(opt.commandLine.isEmpty() ? "" : " " + opt.commandLine).append("`\n");
        sb.append("- Machine: ").append(Runtime.getRuntime().availableProcessors()).append(" cores, Linux ")
                .append(System.getProperty("os.version")).append(", Java ").append(System.getProperty("java.vm.version"))
                .append("; child transport ").append(transport).append(", ").append(loops).append(" event loops")
                .append(opt.sharePort ? " (verticle instances sharing one pre-picked port: connections spread over the loops)\n"
                        : " (verticle instances deployed as `receive` does with port 0: only the first instance gets connections)\n");
        sb.append("- Child JVMs (receiver / raw sink, one per cell, kept across rounds): `").append(opt.childJvm).append("`")
                .append(opt.childEnv.isEmpty() ? "" : ", environment " + opt.childEnv).append("\n");
        Run any = runs.isEmpty() ? null : runs.get(0);
        sb.append("- Image: ").append(SendStats.human(ram)).append(" from seed ").append(opt.seed)
                .append(" (`GuestImages.generate`, zero ratio ").append(opt.zeroRatio);
        if (any != null) {
            long pages = any.sent().pages();
            sb.append(String.format(Locale.ROOT, ": %d pages, %.1f %% zero; non-zero pages ~45 %% random, ~45 %% text-like, ~10 %% sparse",
                    pages, 100.0 * any.sent().zeroPages() / Math.max(1, pages)));
        }
        sb.append("), framing ").append(opt.framing.name().toLowerCase(Locale.ROOT))
                .append(", zlib level ").append(opt.zlibLevel).append(", zstd level ").append(opt.zstdLevel)
                .append(digest == null ? "" : ", received images checked against digest " + digest).append("\n");
        sb.append("- Bytes: every run's byte count at the child equals the sender's. Uncompressed streams are"
                + " byte-identical run to run; compressed ones differ by a few bytes because each channel keeps one"
                + " compression stream and packets are dealt to channels as their queues free up.\n");
        sb.append("- Rounds: ").append(opt.runs).append(" measured after ").append(opt.warmup)
                .append(" warm-up; each round runs every cell once in this order: ")
                .append(opt.cells.stream().map(Cell::name).collect(Collectors.joining(", "))).append("\n");
        sb.append("- GB/s = guest RAM bytes / (t1 - t0) / 10^9, median over rounds. t0: `System.nanoTime()` in the"
                + " sender JVM just before the main channel connects; t1: the child's `System.nanoTime()`"
                + " (same CLOCK_MONOTONIC) once it has consumed the stream's last byte: receiver = migration"
                + " completed (EOF + vmdesc parsed, all multifd syncs paired), raw sink = last read before every"
                + " connection closed. The sender runs on the same 2 cores as the child.\n");
        sb.append("- x raw sink: median GB/s of the cell / median GB/s of the raw sink fed the same framing"
                + " (`sink-plain` for plain, `sink-mfN` for multifd N; the same compressed stream when such a"
                + " sink cell was run). CPU: user+system seconds from /proc per run (median); other processes' CPU ="
                + " the whole machine's busy time (/proc/stat) during the run minus the sender's and the child's:"
                + " the noise the run competed with.\n\n");

        sb.append("| cell | GB/s guest RAM (median) | min - max | x raw sink | wall s | wire bytes | RAM/wire | compression ratio | child CPU s (usr+sys) | sender CPU s (usr+sys) | other processes' CPU s |\n");
        sb.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (Map.Entry<Cell, List<Run>> e : byCell.entrySet()) {
            Cell c = e.getKey();
            List<Run> rs = e.getValue();
            if (rs.isEmpty()) {
                continue;
            }
            double gb = median(rs, r -> r.gbps(ram));
            double min = rs.stream().mapToDouble(r -> r.gbps(ram)).min().orElse(0);
            double max = rs.stream().mapToDouble(r -> r.gbps(ram)).max().orElse(0);
            double wire = median(rs, r -> r.sent().totalBytes());
            String vsSink = "-";
            Cell sink = c.sink() ? null : c.sinkFor(opt.cells);
            if (sink != null && !byCell.get(sink).isEmpty()) {
                vsSink = String.format(Locale.ROOT, "%.2f (vs %s)", gb / median(byCell.get(sink), r -> r.gbps(ram)), sink.name());
            }
            String compr = "-";
            if (c.compression() != Compression.NONE) {
                // any uncompressed cell with the same channels: the sender's stream does not depend on the receiver
                List<Run> none = byCell.entrySet().stream()
                        .filter(x -> x.getKey().channels() == c.channels() && x.getKey().compression() == Compression.NONE
                                && !x.getValue().isEmpty())
                        .map(Map.Entry::getValue).findFirst().orElse(null);
                if (none != null) {
                    compr = String.format(Locale.ROOT, "%.2f", median(none, r -> r.sent().totalBytes()) / wire);
                }
            }
            sb.append(String.format(Locale.ROOT, "| %s | **%.3f** | %.3f - %.3f | %s | %.3f | %,.0f | %.2f | %s | %.2f (%.2f+%.2f) | %.2f (%.2f+%.2f) | %.2f |%n",
                    c.name(), gb, min, max, vsSink, median(rs, r -> r.wallNanos() / 1e9), wire, ram / wire, compr,
                    median(rs, r -> r.childCpu().totalNanos() / 1e9), median(rs, r -> r.childCpu().userNanos() / 1e9),
                    median(rs, r -> r.childCpu().sysNanos() / 1e9),
                    median(rs, r -> r.senderCpu().totalNanos() / 1e9), median(rs, r -> r.senderCpu().userNanos() / 1e9),
                    median(rs, r -> r.senderCpu().sysNanos() / 1e9), median(rs, r -> r.othersCpuNanos() / 1e9)));
        }
        sb.append("\nRAM/wire = guest RAM bytes / bytes on the wire (all channels, headers included; zero pages"
                + " travel as 8-byte offsets). Compression ratio = wire bytes of the uncompressed multifd cell /"
                + " wire bytes of this cell.\n\n");

        // the target
        for (Cell c : opt.cells) {
            if (c.sink() || c.channels() == 0 || c.compression() != Compression.NONE) {
                continue;
            }
            Cell sink = c.sinkFor(opt.cells);
            if (sink == null || byCell.get(c).isEmpty() || byCell.get(sink).isEmpty()) {
                continue;
            }
            double ratio = median(byCell.get(c), r -> r.gbps(ram)) / median(byCell.get(sink), r -> r.gbps(ram));
            sb.append(String.format(Locale.ROOT, "**Target %s >= %.2f x %s: %.2f -> %s.**%n%n", c.name(), TARGET,
                    sink.name(), ratio, ratio >= TARGET ? "met" : "NOT met"));
        }

        sb.append("## Every run\n\n| round | cell | GB/s | wall s | sender done s | x raw sink (same round) | child CPU s | child minor faults | sender CPU s | others CPU s | notes |\n");
        sb.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for (Run r : runs) {
            String paired = "-";
            Cell sink = r.cell().sink() ? null : r.cell().sinkFor(opt.cells);
            if (sink != null) {
                Run s = runs.stream().filter(x -> x.cell().equals(sink) && x.round() == r.round()).findFirst().orElse(null);
                if (s != null) {
                    paired = String.format(Locale.ROOT, "%.2f", r.gbps(ram) / s.gbps(ram));
                }
            }
            sb.append(String.format(Locale.ROOT, "| %d | %s | %.3f | %.3f | %.3f | %s | %.2f | %,d | %.2f | %.2f | %s |%n", r.round(),
                    r.cell().name(), r.gbps(ram), r.wallNanos() / 1e9, r.senderNanos() / 1e9, paired,
                    r.childCpu().totalNanos() / 1e9, r.childCpu().minorFaults(), r.senderCpu().totalNanos() / 1e9,
                    r.othersCpuNanos() / 1e9, r.extra()));
        }

        sb.append("\n## Child CPU by thread (the median run of each cell)\n\n");
        sb.append("Java threads from the ThreadMXBean; [bracketed] rows are JVM/kernel threads from /proc.\n\n");
        sb.append("| cell | thread | CPU s |\n|---|---|---:|\n");
        for (Map.Entry<Cell, List<Run>> e : byCell.entrySet()) {
            List<Run> rs = new ArrayList<>(e.getValue());
            if (rs.isEmpty()) {
                continue;
            }
            rs.sort(Comparator.comparingLong(Run::wallNanos));
            Run med = rs.get(rs.size() / 2);
            med.threads().entrySet().stream()
                    .filter(t -> t.getValue() >= 5_000_000L)
                    .sorted(Map.Entry.<String, Long>comparingByValue().reversed())
                    .limit(8)
                    .forEach(t -> sb.append(String.format(Locale.ROOT, "| %s | %s | %.3f |%n", e.getKey().name(), t.getKey(),
                            t.getValue() / 1e9)));
        }
        return sb.toString();
    }

    static double median(List<Run> rs, ToDoubleFunction<Run> f) {
        double[] v = rs.stream().mapToDouble(f).sorted().toArray();
        if (v.length == 0) {
            return Double.NaN;
        }
        int m = v.length / 2;
        return v.length % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
    }
}
