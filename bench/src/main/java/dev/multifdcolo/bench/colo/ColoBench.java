package dev.multifdcolo.bench.colo;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoCheckpoint;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.Sizes;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.encode.NoneMachine;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The COLO checkpoint benchmark: the upstream multifd-COLO table ({plain, multifd-4} x {idle, load},
 * memory-transfer time per checkpoint, mean and p99) reproduced with our primary emulator
 * ({@link ColoPrimary}, this JVM) against our COLO secondary in child JVMs ({@link ColoChild}), on
 * loopback.
 *
 * <pre>
 *   bench/run-colo.sh [--ram 1G] [--checkpoints 100] [--warmup 10] [--interval-ms 600] [--block 10]
 *                     [--cells plain-idle,mf4-idle,plain-load,mf4-load] [--seed 1] [--zero-ratio 0.25]
 *                     [--transport auto] [--sequential] [--verify] [--quick] [--out DIR]
 * </pre>
 *
 * All cells are set up first (one child per cell, precopy, warm-up checkpoints), then measured in
 * interleaved blocks of {@code --block} checkpoints (cell 1, cell 2, ..., cell 1, ...), so machine
 * noise hits all cells alike. With {@code --sequential} (or when all sessions at once would not
 * fit in memory: 3 x RAM per cell) each cell runs alone, start to end.
 */
public final class ColoBench {

    /**
     * One cell of the matrix; {@code transport} (from an {@code @T} suffix, e.g. {@code mf4-load@epoll})
     * overrides {@code --transport} for this cell's secondary, or is null.
     */
    record Cell(String name, int channels, String workload, String transport) {
        static Cell parse(String s) {
            String t = null;
            int at = s.indexOf('@');
            if (at >= 0) {
                t = s.substring(at + 1);
                if (!List.of("auto", "io_uring", "epoll", "nio").contains(t)) {
                    throw new IllegalArgumentException("cell transport must be @auto|@io_uring|@epoll|@nio, got '" + s + "'");
                }
            }
            String base = at >= 0 ? s.substring(0, at) : s;
            String[] p = base.split("-", 2);
            if (p.length != 2 || !Workloads.NAMES.contains(p[1])) {
                throw new IllegalArgumentException("cell must be plain-WORKLOAD or mfN-WORKLOAD (workload idle|load|random), got '" + s + "'");
            }
            int ch;
            if (p[0].equals("plain")) {
                ch = 0;
            } else if (p[0].startsWith("mf")) {
                ch = Integer.parseInt(p[0].substring(2));
                if (ch < 1) {
                    throw new IllegalArgumentException("mfN needs N >= 1: " + s);
                }
            } else {
                throw new IllegalArgumentException("cell must start with plain- or mfN-: " + s);
            }
            return new Cell(s, ch, p[1], t);
        }

        String column() {
            return channels == 0 ? "plain" : "multifd-" + channels;
        }
    }

    /** One measured checkpoint: the primary's view joined with the secondary's line. */
    record Row(String cell, int round, long epoch, long pages, long zeroPages, long bytes, long transferNs, long pauseNs,
               long sRamNs, long sFlushNs, long sPauseNs, long runs) {
    }

    static final class Options {
        long ram = 1L << 30;
        int checkpoints = 100;
        int warmup = 10;
        long intervalMs = 600;
        int block = 10;
        List<Cell> cells = new ArrayList<>();
        long seed = 1;
        double zeroRatio = 0.25;
        String transport = "auto";
        String framing = "modern";
        boolean sequential;
        boolean verify;
        boolean quick;
        boolean help;
        int flushWorkers = 2;
        String childJvmArgs = "--enable-native-access=ALL-UNNAMED -Xmx1g -XX:MaxDirectMemorySize=2g";
        Path out;

        static final String USAGE = """
                usage: bench/run-colo.sh [options]
                  --ram SIZE            guest RAM per cell (default 1G)
                  --checkpoints N       measured checkpoints per cell (default 100)
                  --warmup N            warm-up checkpoints per cell, not measured (default 10)
                  --interval-ms N       checkpoint interval, x-checkpoint-delay (default 600)
                  --block N             checkpoints per cell per interleaved block (default 10)
                  --cells LIST          comma list of plain-W / mfN-W, W = idle|load|random, each
                                        optionally with @T: this cell's transport (e.g. mf4-load@epoll)
                                        (default plain-idle,mf4-idle,plain-load,mf4-load)
                  --seed N              workload and image seed (default 1)
                  --zero-ratio R        share of zero pages in the precopy image (default 0.25)
                  --transport T         child transport: auto|io_uring|epoll|nio (default auto)
                  --framing F           modern (QEMU 11.1) | legacy (7.2) (default modern)
                  --flush-workers N     the secondary's flush workers (default 2)
                  --sequential          one cell at a time instead of interleaved blocks
                  --verify              digests on both sides every checkpoint, compared per epoch
                                        (adds a CRC32C of the guest image to every secondary pause)
                  --child-jvm-args S    JVM flags of the children
                  --quick               smoke run: 64M, 20 checkpoints, 3 warm-up, 200 ms, block 5, --verify
                  --out DIR             output directory (default bench/results/colo-DATE[-quick])
                """;

        static Options parse(String[] a) {
            Options o = new Options();
            List<String> cells = null;
            Map<String, Boolean> given = new HashMap<>();
            for (int i = 0; i < a.length; i++) {
                String k = a[i];
                given.put(k, true);
                switch (k) {
                    case "--help", "-h" -> o.help = true;
                    case "--quick" -> o.quick = true;
                    case "--sequential" -> o.sequential = true;
                    case "--verify" -> o.verify = true;
                    default -> {
                        if (i + 1 >= a.length) {
                            throw new IllegalArgumentException("missing value for " + k);
                        }
                        String v = a[++i];
                        switch (k) {
                            case "--ram" -> o.ram = Sizes.parse(v);
                            case "--checkpoints" -> o.checkpoints = Integer.parseInt(v);
                            case "--warmup" -> o.warmup = Integer.parseInt(v);
                            case "--interval-ms" -> o.intervalMs = Long.parseLong(v);
                            case "--block" -> o.block = Integer.parseInt(v);
                            case "--cells" -> cells = List.of(v.split(","));
                            case "--seed" -> o.seed = Long.parseLong(v);
                            case "--zero-ratio" -> o.zeroRatio = Double.parseDouble(v);
                            case "--transport" -> o.transport = v;
                            case "--framing" -> o.framing = v;
                            case "--flush-workers" -> o.flushWorkers = Integer.parseInt(v);
                            case "--child-jvm-args" -> o.childJvmArgs = v;
                            case "--out" -> o.out = Path.of(v);
                            default -> throw new IllegalArgumentException("unknown option " + k);
                        }
                    }
                }
            }
            if (o.quick) {
                if (!given.containsKey("--ram")) {
                    o.ram = 64L << 20;
                }
                if (!given.containsKey("--checkpoints")) {
                    o.checkpoints = 20;
                }
                if (!given.containsKey("--warmup")) {
                    o.warmup = 3;
                }
                if (!given.containsKey("--interval-ms")) {
                    o.intervalMs = 200;
                }
                if (!given.containsKey("--block")) {
                    o.block = 5;
                }
                o.verify = true;
            }
            for (String c : cells == null ? List.of("plain-idle", "mf4-idle", "plain-load", "mf4-load") : cells) {
                o.cells.add(Cell.parse(c.trim()));
            }
            if (o.checkpoints < 1 || o.warmup < 0 || o.intervalMs < 0 || o.block < 1 || o.ram % 4096 != 0) {
                throw new IllegalArgumentException("--checkpoints >= 1, --warmup >= 0, --interval-ms >= 0, --block >= 1, --ram multiple of 4 KiB");
            }
            if (!o.framing.equals("modern") && !o.framing.equals("legacy")) {
                throw new IllegalArgumentException("--framing modern|legacy");
            }
            if (o.out == null) {
                o.out = Path.of("bench", "results", "colo-" + LocalDate.now(ZoneOffset.UTC) + (o.quick ? "-quick" : ""));
            }
            return o;
        }
    }

    /** A live cell: its child JVM and its primary. */
    static final class Session implements AutoCloseable {
        final Cell cell;
        final Process process;
        final Writer stdin;
        final BlockingQueue<String> lines = new LinkedBlockingQueue<>();
        final Map<Long, Map<String, String>> secondary = new HashMap<>();
        final List<ColoCheckpoint> primary = new ArrayList<>();
        final Path log;
        GuestMemory memory;
        ColoPrimary colo;
        int port;
        String transport;
        long precopyNanos;
        String doneLine;

        Session(Cell cell, Process process, Path log) {
            this.cell = cell;
            this.process = process;
            this.log = log;
            this.stdin = new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
            Thread.ofPlatform().daemon().name("child-" + cell.name).start(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                    String l;
                    while ((l = r.readLine()) != null) {
                        if (l.startsWith("@@ ")) {
                            lines.add(l.substring(3));
                        }
                    }
                } catch (IOException ignored) {
                    // gone
                }
                lines.add("eof");
            });
        }

        /** Next protocol line with the prefix; commit lines met on the way are stored. */
        String await(String prefix, Duration timeout) throws IOException, InterruptedException {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (true) {
                long left = deadline - System.nanoTime();
                String l = left <= 0 ? null : lines.poll(left, TimeUnit.NANOSECONDS);
                if (l == null) {
                    throw new IOException(cell.name + ": no '" + prefix + "' from the secondary within " + timeout.toSeconds() + " s; see " + log);
                }
                if (l.equals("eof")) {
                    throw new IOException(cell.name + ": the secondary exited; see " + log);
                }
                if (l.startsWith("failed ")) {
                    throw new IOException(cell.name + ": secondary: " + l + "; see " + log);
                }
                if (l.startsWith("cp ")) {
                    Map<String, String> f = fields(l);
                    secondary.put(Long.parseLong(f.get("epoch")), f);
                }
                if (l.startsWith(prefix)) {
                    return l;
                }
            }
        }

        /** Waits until the secondary's line for {@code epoch} arrived. */
        Map<String, String> secondaryOf(long epoch) throws IOException, InterruptedException {
            while (!secondary.containsKey(epoch)) {
                await("cp ", Duration.ofSeconds(30));
            }
            return secondary.get(epoch);
        }

        void send(String s) throws IOException {
            stdin.write(s + "\n");
            stdin.flush();
        }

        @Override
        public void close() {
            if (colo != null) {
                colo.close();
                colo = null;
                try {
                    doneLine = await("done ", Duration.ofSeconds(15));
                } catch (IOException | InterruptedException e) {
                    doneLine = "no done line: " + e.getMessage();
                }
            }
            if (memory != null) {
                memory.close();
                memory = null;
            }
            try {
                send("quit");
                if (!process.waitFor(15, TimeUnit.SECONDS)) {
                    process.destroy();
                    if (!process.waitFor(5, TimeUnit.SECONDS)) {
                        process.destroyForcibly();
                    }
                }
            } catch (IOException | InterruptedException e) {
                process.destroyForcibly();
            }
        }
    }

    static Map<String, String> fields(String line) {
        Map<String, String> m = new HashMap<>();
        for (String part : line.split(" ")) {
            int eq = part.indexOf('=');
            if (eq > 0) {
                m.put(part.substring(0, eq), part.substring(eq + 1));
            }
        }
        return m;
    }

    private final Options opt;
    private final PrintStream log = System.err;
    private final List<Row> rows = new ArrayList<>();
    private final List<String> notes = new ArrayList<>();
    private PrintStream partial;

    private ColoBench(Options opt) {
        this.opt = opt;
    }

    public static void main(String[] args) throws Exception {
        Options opt;
        try {
            opt = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println(Options.USAGE);
            System.exit(2);
            return;
        }
        if (opt.help) {
            System.out.println(Options.USAGE);
            return;
        }
        System.exit(new ColoBench(opt).run());
    }

    private int run() throws Exception {
        Files.createDirectories(opt.out);
        long wall0 = System.nanoTime();
        boolean sequential = opt.sequential;
        long need = 3L * opt.ram * opt.cells.size();   // primary image + secondary guest and cache
        long avail = memAvailable();
        if (!sequential && avail > 0 && need > avail * 8 / 10) {
            sequential = true;
            notes.add(String.format(Locale.ROOT, "cells ran one after another: all sessions at once need about %.1f GiB,"
                    + " %.1f GiB available", need / (double) (1L << 30), avail / (double) (1L << 30)));
        }
        log.printf(Locale.ROOT, "colo bench: %s RAM, %d cells, %d measured + %d warm-up checkpoints each, interval %d ms, %s%n",
                human(opt.ram), opt.cells.size(), opt.checkpoints, opt.warmup, opt.intervalMs,
                sequential ? "sequential" : "interleaved blocks of " + opt.block);
        long[] cpu0 = ProcStat.machineCpu();
        long self0 = ProcStat.procCpu(ProcessHandle.current().pid());
        Map<String, Long> childCpu = new HashMap<>();
        Map<String, Session> sessions = new java.util.LinkedHashMap<>();
        int status = 0;
        try {
            if (sequential) {
                for (Cell c : opt.cells) {
                    Session s = open(c);
                    sessions.put(c.name, s);
                    measure(List.of(s));
                    childCpu.put(c.name, ProcStat.procCpu(s.process.pid()));
                    s.close();
                }
            } else {
                List<Session> all = new ArrayList<>();
                for (Cell c : opt.cells) {
                    Session s = open(c);
                    sessions.put(c.name, s);
                    all.add(s);
                }
                measure(all);
                for (Session s : all) {
                    childCpu.put(s.cell.name, ProcStat.procCpu(s.process.pid()));
                    s.close();
                }
            }
        } catch (Exception e) {
            log.println("error: " + e);
            e.printStackTrace(log);
            status = 1;
            for (Session s : sessions.values()) {
                if (s.colo != null) {
                    s.colo.kill();
                    s.colo = null;
                }
                s.close();
            }
            if (rows.isEmpty()) {
                return status;
            }
            notes.add("the run FAILED part-way (" + e.getMessage() + "); the tables hold what was measured");
        }
        long[] cpu1 = ProcStat.machineCpu();
        long self = ProcStat.procCpu(ProcessHandle.current().pid()) - self0;
        long wall = System.nanoTime() - wall0;
        long children = childCpu.values().stream().mapToLong(Long::longValue).sum();
        long busy = cpu1[0] - cpu0[0];
        long total = cpu1[1] - cpu0[1];
        notes.add(String.format(Locale.ROOT, "machine CPU over the whole run (%.0f s wall, %d cores): %.0f %% busy;"
                        + " bench JVM (primaries) %.1f s, children (secondaries) %.1f s, other processes about %.1f s",
                wall / 1e9, Runtime.getRuntime().availableProcessors(), total == 0 ? 0 : 100.0 * busy / total,
                self / 1e9, children / 1e9, Math.max(0, busy * 10e6 / 1e9 - self / 1e9 - children / 1e9)));
        for (Session s : sessions.values()) {
            notes.add(String.format(Locale.ROOT, "%s: precopy %.2f s, transport %s, secondary ended: %s", s.cell.name,
                    s.precopyNanos / 1e9, s.transport, s.doneLine));
        }
        String md = new ColoReport(opt, rows, notes, sessions.keySet().stream().toList(), wall).write(opt.out);
        if (partial != null) {
            partial.close();
            Files.deleteIfExists(opt.out.resolve("checkpoints.partial.csv"));   // checkpoints.csv has them all
        }
        System.out.println(md);
        log.printf(Locale.ROOT, "wrote %s (%.0f s)%n", opt.out, (System.nanoTime() - wall0) / 1e9);
        return status;
    }

    private Session open(Cell c) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(Arrays.asList(opt.childJvmArgs.trim().split("\\s+")));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(ColoChild.class.getName());
        cmd.addAll(List.of("--listen", "127.0.0.1:0", "--channels", Integer.toString(c.channels), "--transport", c.transport != null ? c.transport : opt.transport,
                "--delay-ms", Long.toString(Math.max(1, opt.intervalMs)), "--heartbeat-ms", "600000",
                "--flush-workers", Integer.toString(opt.flushWorkers), "--digest", Boolean.toString(opt.verify)));
        Path logFile = opt.out.resolve("child-" + c.name + ".log");
        Files.deleteIfExists(logFile);
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.appendTo(logFile.toFile())).start();
        Session s = new Session(c, p, logFile);
        try {
            Map<String, String> ready = fields(s.await("ready ", Duration.ofSeconds(60)));
            s.port = Integer.parseInt(ready.get("port"));
            s.transport = ready.get("transport");
            log.printf("%s: secondary pid %s on port %d (%s)%n", c.name, ready.get("pid"), s.port, s.transport);
            Framing f = opt.framing.equals("legacy") ? Framing.LEGACY : Framing.MODERN;
            SenderConfig cfg = SenderConfig.builder("127.0.0.1", s.port).framing(f).multifd(c.channels)
                    .devices(new NoneMachine(f == Framing.LEGACY ? NoneMachine.Flavor.QEMU_7_2 : NoneMachine.Flavor.QEMU_11_1,
                            "prelaunch", 0, 0))
                    .stallTimeout(Duration.ofSeconds(60)).build();
            try {
                s.memory = GuestImages.generate(opt.ram, opt.seed, opt.zeroRatio);
            } catch (dev.multifdcolo.memory.MemoryLimitException e) {
                throw new IOException("cannot allocate the primary's image: " + e.getMessage(), e);
            }
            ColoPrimary.Options po = ColoPrimary.Options.defaults().withDigests(opt.verify)
                    .withReplyTimeout(Duration.ofSeconds(60));
            long t0 = System.nanoTime();
            s.colo = ColoPrimary.connect(cfg, s.memory, Workloads.parse(c.workload, opt.seed), po);
            s.colo.start();
            s.precopyNanos = System.nanoTime() - t0;
            log.printf(Locale.ROOT, "%s: precopy of %s in %.2f s; %d warm-up checkpoints%n", c.name, human(opt.ram),
                    s.precopyNanos / 1e9, opt.warmup);
            List<ColoCheckpoint> w = s.colo.run(opt.warmup, Duration.ofMillis(opt.intervalMs), null);
            for (ColoCheckpoint cp : w) {
                check(s, cp);
            }
        } catch (IOException | RuntimeException e) {
            if (s.colo != null) {
                s.colo.kill();
                s.colo = null;
            }
            s.close();
            throw e;
        }
        return s;
    }

    /** Measured checkpoints of the given sessions, in interleaved blocks. */
    private void measure(List<Session> all) throws IOException, InterruptedException {
        if (partial == null) {
            // raw rows as they come, so a run that dies before the report keeps its data
            partial = new PrintStream(Files.newOutputStream(opt.out.resolve("checkpoints.partial.csv")), true, StandardCharsets.UTF_8);
            partial.println(ColoReport.CSV_HEADER);
        }
        int round = 0;
        Map<Session, Integer> done = new HashMap<>();
        boolean more = true;
        while (more) {
            more = false;
            for (Session s : all) {
                int have = done.getOrDefault(s, 0);
                int k = Math.min(opt.block, opt.checkpoints - have);
                if (k <= 0) {
                    continue;
                }
                List<ColoCheckpoint> cps = s.colo.run(k, Duration.ofMillis(opt.intervalMs), null);
                for (ColoCheckpoint cp : cps) {
                    Map<String, String> f = check(s, cp);
                    Row row = new Row(s.cell.name, round, cp.epoch(), cp.dirtyPages(), cp.zeroPages(), cp.bytes(),
                            cp.transferNanos(), cp.pauseNanos(), Long.parseLong(f.get("ram")), Long.parseLong(f.get("flush")),
                            Long.parseLong(f.get("pause")), Long.parseLong(f.get("runs")));
                    rows.add(row);
                    partial.println(ColoReport.csvLine(row));
                }
                done.put(s, have + k);
                if (have + k < opt.checkpoints) {
                    more = true;
                }
                log.printf(Locale.ROOT, "  round %d %s: %d/%d, last transfer %.2f ms pause %.2f ms%n", round, s.cell.name,
                        have + k, opt.checkpoints, cps.getLast().transferNanos() / 1e6, cps.getLast().pauseNanos() / 1e6);
            }
            round++;
        }
    }

    /** The secondary's line for this checkpoint; with --verify, the digests must agree. */
    private Map<String, String> check(Session s, ColoCheckpoint cp) throws IOException, InterruptedException {
        Map<String, String> f = s.secondaryOf(cp.epoch());
        if (Long.parseLong(f.get("pages")) < cp.dirtyPages()) {
            throw new IOException(s.cell.name + " checkpoint " + cp.epoch() + ": secondary flushed " + f.get("pages")
                    + " pages, primary sent " + cp.dirtyPages());
        }
        if (opt.verify && cp.digest() != null && !cp.digest().equals(f.get("digest"))) {
            throw new IOException(s.cell.name + " checkpoint " + cp.epoch() + ": digest " + f.get("digest")
                    + " on the secondary, " + cp.digest() + " on the primary");
        }
        return f;
    }

    static String human(long bytes) {
        if (bytes % (1L << 30) == 0) {
            return bytes / (1L << 30) + " GiB";
        }
        if (bytes % (1L << 20) == 0) {
            return bytes / (1L << 20) + " MiB";
        }
        return bytes + " B";
    }

    private static long memAvailable() {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (l.startsWith("MemAvailable:")) {
                    return Long.parseLong(l.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (IOException | RuntimeException ignored) {
            // unknown
        }
        return -1;
    }
}
