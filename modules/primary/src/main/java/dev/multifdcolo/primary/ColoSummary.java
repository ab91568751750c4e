package dev.multifdcolo.primary;

import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Aggregates of a run of checkpoints: transfer and pause times (mean, p50, p99, max, in ms) and
 * pages per checkpoint.
 */
public record ColoSummary(int checkpoints, double meanPages, long maxPages, long bytes, Stat transferMs, Stat pauseMs) {

    /** Mean, median, 99th percentile and maximum of one metric. */
    public record Stat(double mean, double p50, double p99, double max) {
        static Stat of(double[] v) {
            if (v.length == 0) {
                return new Stat(0, 0, 0, 0);
            }
            double[] s = v.clone();
            Arrays.sort(s);
            double sum = 0;
            for (double x : s) {
                sum += x;
            }
            return new Stat(sum / s.length, percentile(s, 50), percentile(s, 99), s[s.length - 1]);
        }

        /** Nearest-rank percentile of sorted values. */
        static double percentile(double[] sorted, double p) {
            int rank = (int) Math.ceil(p / 100.0 * sorted.length);
            return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))];
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "mean %.3f / p50 %.3f / p99 %.3f / max %.3f ms", mean, p50, p99, max);
        }
    }

    public static ColoSummary of(List<ColoCheckpoint> cps) {
        double[] t = new double[cps.size()];
        double[] p = new double[cps.size()];
        long pages = 0;
        long max = 0;
        long bytes = 0;
        for (int i = 0; i < t.length; i++) {
            ColoCheckpoint c = cps.get(i);
            t[i] = c.transferNanos() / 1e6;
            p[i] = c.pauseNanos() / 1e6;
            pages += c.dirtyPages();
            max = Math.max(max, c.dirtyPages());
            bytes += c.bytes();
        }
        return new ColoSummary(cps.size(), cps.isEmpty() ? 0 : (double) pages / cps.size(), max, bytes, Stat.of(t), Stat.of(p));
    }

    /** Two lines for the CLI. */
    public String text() {
        return String.format(Locale.ROOT, "%d checkpoints, %.0f dirty pages on average (max %d), %s sent%n"
                        + "transfer (VMSTATE_SEND → end of live RAM): %s%npause (REQUEST → LOADED): %s",
                checkpoints, meanPages, maxPages, SendStats.human(bytes), transferMs, pauseMs);
    }
}
