package dev.multifdcolo.bench.colo;

import org.HdrHistogram.Histogram;

import javax.imageio.ImageIO;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.Path2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** PNG plots drawn with Java2D (headless): latency CDFs per cell and transfer time vs dirty pages. */
final class ColoPlots {
    private ColoPlots() {}

    static final Color[] COLORS = {new Color(0x1f77b4), new Color(0xd62728), new Color(0x2ca02c), new Color(0xff7f0e),
            new Color(0x9467bd), new Color(0x8c564b), new Color(0xe377c2), new Color(0x7f7f7f)};
    static final int W = 900;
    static final int H = 560;
    static final int L = 80;
    static final int R = 30;
    static final int T = 50;
    static final int B = 70;

    static {
        System.setProperty("java.awt.headless", "true");
    }

    /** One CDF plot per metric (transfer, pause, flush, secondary share), one line per cell; log-scale x. */
    static List<String> cdfs(Path dir, List<String> cells, Map<String, Map<String, Histogram>> hist,
                             List<ColoBench.Row> rows) throws IOException {
        List<String> files = new ArrayList<>();
        for (String metric : List.of("transfer", "pause", "flush", "share")) {
            ColoReport.Metric m = ColoReport.METRICS.stream().filter(x -> x.key().equals(metric)).findFirst().orElseThrow();
            List<double[]> xs = new ArrayList<>();
            for (String c : cells) {
                xs.add(rows.stream().filter(r -> r.cell().equals(c)).mapToDouble(r -> m.of().applyAsLong(r) / 1e6).toArray());
            }
            String name = "cdf-" + metric + ".png";
            if (!cdf(dir.resolve(name), "CDF of " + m.title(), m.key() + " (ms, log scale)", cells, xs)) {
                continue;
            }
            files.add(name);
        }
        return files;
    }

    /**
     * One CDF plot (log-scale x, ms), one line per series; {@code valuesMs} need not be sorted.
     *
     * @return false (nothing written) when all series are empty
     */
    static boolean cdf(Path file, String title, String xLabel, List<String> cells, List<double[]> valuesMs) throws IOException {
        List<double[]> xs = new ArrayList<>();
        double lo = Double.MAX_VALUE;
        double hi = 0;
        for (double[] raw : valuesMs) {
            double[] v = java.util.Arrays.stream(raw).map(x -> Math.max(x, 0.001)).sorted().toArray();
            xs.add(v);
            if (v.length > 0) {
                lo = Math.min(lo, v[0]);
                hi = Math.max(hi, v[v.length - 1]);
            }
        }
        if (hi == 0) {
            return false;
        }
        double x0 = Math.pow(10, Math.floor(Math.log10(lo)));
        double x1 = Math.pow(10, Math.ceil(Math.log10(hi)));
        if (x1 <= x0) {
            x1 = x0 * 10;
        }
        BufferedImage img = new BufferedImage(W, H, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = frame(img, title, xLabel, "fraction of checkpoints");
        double lx0 = Math.log10(x0);
        double lx1 = Math.log10(x1);
        // grid: decades and 2, 5
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        for (double d = x0; d <= x1 * 1.0001; d *= 10) {
            for (double k : new double[] {1, 2, 5}) {
                double v = d * k;
                if (v > x1 * 1.0001) {
                    break;
                }
                int px = px(Math.log10(v), lx0, lx1);
                g.setColor(k == 1 ? new Color(0xcccccc) : new Color(0xeeeeee));
                g.drawLine(px, T, px, H - B);
                g.setColor(Color.DARK_GRAY);
                String s = v >= 1 ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.3g", v);
                g.drawString(s, px - g.getFontMetrics().stringWidth(s) / 2, H - B + 18);
            }
        }
        for (int i = 0; i <= 10; i++) {
            double f = i / 10.0;
            int py = py(f, 0, 1);
            g.setColor(i == 5 || i == 9 ? new Color(0xbbbbbb) : new Color(0xeeeeee));
            g.drawLine(L, py, W - R, py);
            g.setColor(Color.DARK_GRAY);
            g.drawString(String.format(Locale.ROOT, "%.1f", f), L - 30, py + 4);
        }
        int py99 = py(0.99, 0, 1);
        g.setColor(new Color(0xbbbbbb));
        g.drawLine(L, py99, W - R, py99);
        g.setColor(Color.GRAY);
        g.drawString("p99", W - R - 28, py99 - 3);
        g.setStroke(new BasicStroke(2f));
        for (int i = 0; i < cells.size(); i++) {
            double[] v = xs.get(i);
            if (v.length == 0) {
                continue;
            }
            Path2D.Double p = new Path2D.Double();
            p.moveTo(px(Math.log10(v[0]), lx0, lx1), py(0, 0, 1));
            for (int j = 0; j < v.length; j++) {
                int x = px(Math.log10(v[j]), lx0, lx1);
                p.lineTo(x, py((double) j / v.length, 0, 1));
                p.lineTo(x, py((double) (j + 1) / v.length, 0, 1));
            }
            g.setColor(COLORS[i % COLORS.length]);
            g.draw(p);
        }
        legend(g, cells);
        ImageIO.write(img, "png", file.toFile());
        g.dispose();
        return true;
    }

    /** Transfer time vs dirty pages, one colour per cell. */
    static String scatter(Path dir, List<String> cells, List<ColoBench.Row> rows) throws IOException {
        double maxX = rows.stream().mapToLong(ColoBench.Row::pages).max().orElse(1);
        double maxY = rows.stream().mapToLong(ColoBench.Row::transferNs).max().orElse(1) / 1e6;
        maxX = nice(maxX);
        maxY = nice(maxY);
        BufferedImage img = new BufferedImage(W, H, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = frame(img, "Memory transfer time vs dirty pages per checkpoint", "dirty pages in the checkpoint",
                "transfer (ms)");
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        for (int i = 0; i <= 10; i++) {
            double vx = maxX * i / 10;
            double vy = maxY * i / 10;
            int px = px(vx, 0, maxX);
            int py = py(vy, 0, maxY);
            g.setColor(new Color(0xeeeeee));
            g.drawLine(px, T, px, H - B);
            g.drawLine(L, py, W - R, py);
            g.setColor(Color.DARK_GRAY);
            String sx = String.format(Locale.ROOT, "%.0f", vx);
            g.drawString(sx, px - g.getFontMetrics().stringWidth(sx) / 2, H - B + 18);
            String sy = maxY >= 10 ? String.format(Locale.ROOT, "%.0f", vy) : String.format(Locale.ROOT, "%.1f", vy);
            g.drawString(sy, L - 8 - g.getFontMetrics().stringWidth(sy), py + 4);
        }
        for (int i = 0; i < cells.size(); i++) {
            String c = cells.get(i);
            g.setColor(COLORS[i % COLORS.length]);
            for (ColoBench.Row r : rows) {
                if (!r.cell().equals(c)) {
                    continue;
                }
                int x = px(r.pages(), 0, maxX);
                int y = py(Math.min(r.transferNs() / 1e6, maxY), 0, maxY);
                if (c.startsWith("plain")) {
                    g.fillOval(x - 3, y - 3, 7, 7);
                } else {
                    g.drawRect(x - 3, y - 3, 6, 6);
                }
            }
        }
        legend(g, cells);
        String name = "transfer-vs-pages.png";
        ImageIO.write(img, "png", dir.resolve(name).toFile());
        g.dispose();
        return name;
    }

    private static double nice(double v) {
        if (v <= 0) {
            return 1;
        }
        double e = Math.pow(10, Math.floor(Math.log10(v)));
        for (double k : new double[] {1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10}) {
            if (k * e >= v) {
                return k * e;
            }
        }
        return 10 * e;
    }

    private static Graphics2D frame(BufferedImage img, String title, String xLabel, String yLabel) {
        Graphics2D g = img.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, W, H);
        g.setColor(Color.BLACK);
        g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 15));
        g.drawString(title, L, 28);
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 13));
        g.drawString(xLabel, L + (W - L - R) / 2 - g.getFontMetrics().stringWidth(xLabel) / 2, H - 25);
        Graphics2D r = (Graphics2D) g.create();
        r.rotate(-Math.PI / 2);
        r.drawString(yLabel, -(T + (H - T - B) / 2) - r.getFontMetrics().stringWidth(yLabel) / 2, 20);
        r.dispose();
        g.drawRect(L, T, W - L - R, H - T - B);
        return g;
    }

    private static void legend(Graphics2D g, List<String> cells) {
        g.setStroke(new BasicStroke(1f));
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 13));
        int w = cells.stream().mapToInt(c -> g.getFontMetrics().stringWidth(c)).max().orElse(40) + 40;
        int x = L + 12;
        int y = T + 12;
        g.setColor(new Color(255, 255, 255, 230));
        g.fillRect(x, y, w, 20 * cells.size() + 8);
        g.setColor(Color.GRAY);
        g.drawRect(x, y, w, 20 * cells.size() + 8);
        for (int i = 0; i < cells.size(); i++) {
            g.setColor(COLORS[i % COLORS.length]);
            g.fillRect(x + 8, y + 10 + 20 * i, 18, 6);
            g.setColor(Color.BLACK);
            g.drawString(cells.get(i), x + 32, y + 18 + 20 * i);
        }
    }

    private static int px(double v, double lo, double hi) {
        return (int) Math.round(L + (v - lo) / (hi - lo) * (W - L - R));
    }

    private static int py(double v, double lo, double hi) {
        return (int) Math.round(H - B - (v - lo) / (hi - lo) * (H - T - B));
    }
}
