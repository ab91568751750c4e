package dev.multifdcolo.bench.colo;

import dev.multifdcolo.qemu.Qemu;
import dev.multifdcolo.qemu.QemuBinaries;
import dev.multifdcolo.qemu.QemuBinary;
import dev.multifdcolo.qemu.Qmp;
import dev.multifdcolo.qemu.guest.DirtyGuest;
import io.vertx.core.json.JsonObject;
import org.HdrHistogram.Histogram;

import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Side by side with the real thing: a real QEMU 11.1 COLO primary running the dirty test guest
 * (TCG, {@code -M pc -m 160M}, x-checkpoint-delay 600) against (a) a real QEMU 11.1 COLO
 * secondary and (b) our secondary ({@code java -jar multifd-colo.jar receive --colo}), plain and
 * multifd, light (≈ 2 k pages per checkpoint) and heavy (≈ 16 k) guests. Everything is measured
 * on the primary, from its own trace ({@code -trace ... -msg timestamp=on -D FILE}), so both
 * secondaries are judged by the same clock (the method of QEMU-11.1-NOTES §3.3):
 *
 * <ul>
 * <li>{@code ram} = {@code ram_save_complete} done=0 → done=1 (all dirty pages plus the multifd sync);</li>
 * <li>{@code pause} = {@code vm_state_notify running 0} → {@code running 1} (the primary's VM stop);</li>
 * <li>{@code share} = pause − ram: the part of the pause the secondary decides (receive the rest,
 *     load device state, flush, answer RECEIVED/LOADED) plus the primary's own device save.</li>
 * </ul>
 *
 * <pre>
 *   bench/run-real-colo.sh [--checkpoints 100] [--warmup 5] [--reps 1]
 *                          [--cells light-plain,light-mf4,heavy-plain,heavy-mf4] [--secondaries qemu,ours]
 *                          [--transport auto] [--quick] [--out DIR]
 * </pre>
 *
 * Runs go in the order rep × cell × secondary, the secondary order alternating per cell, so both
 * secondaries of a cell run back to back. Each run is a fresh primary (and secondary): boot,
 * precopy, warm-up checkpoints (not counted), then the measured ones.
 */
public final class RealColoBench {

    static final long RAM_MIB = 160;
    static final List<String> TRACE_EVENTS = List.of("vm_state_notify", "ram_save_complete", "colo_send_message",
            "colo_receive_message", "multifd_send_sync_main");

    record Cell(String name, String workload, int channels) {
        static Cell parse(String s) {
            String[] p = s.split("-", 2);
            if (p.length != 2 || !Set.of("light", "heavy").contains(p[0])) {
                throw new IllegalArgumentException("cell must be light|heavy-plain|mfN, got '" + s + "'");
            }
            int ch = p[1].equals("plain") ? 0 : p[1].startsWith("mf") ? Integer.parseInt(p[1].substring(2)) : -1;
            if (ch < 0) {
                throw new IllegalArgumentException("cell must be light|heavy-plain|mfN, got '" + s + "'");
            }
            return new Cell(s, p[0], ch);
        }

        DirtyGuest guest() {
            return workload.equals("light") ? DirtyGuest.light() : DirtyGuest.heavy();
        }
    }

    /** One checkpoint as the primary's trace shows it (times in µs since the epoch, wall clock). */
    record Cp(long request, long reply, long stop, long ram0, long ram1, long pages, long received, long loaded, long start) {
        double ramMs() {
            return (ram1 - ram0) / 1e3;
        }

        double pauseMs() {
            return (start - stop) / 1e3;
        }

        double shareMs() {
            return pauseMs() - ramMs();
        }

        /** request → reply (outside the pause). */
        double replyMs() {
            return (reply - request) / 1e3;
        }

        /** end of RAM → VMSTATE_RECEIVED (device state sent and acknowledged). */
        double receivedMs() {
            return (received - ram1) / 1e3;
        }

        /** VMSTATE_RECEIVED → VMSTATE_LOADED (the secondary's load/flush). */
        double loadedMs() {
            return (loaded - received) / 1e3;
        }
    }

    record Run(int seq, int rep, Cell cell, String secondary, List<Cp> cps, double machineBusy, double otherCpuS,
               double primaryCpuS, double secondaryCpuS, double wallS, String note) {
    }

    static final class Options {
        int checkpoints = 100;
        int warmup = 5;
        int reps = 1;
        List<Cell> cells = new ArrayList<>();
        List<String> secondaries = List.of("qemu", "ours");
        String transport = "auto";
        String jar = "target/multifd-colo.jar";
        String oursJvmArgs = "--enable-native-access=ALL-UNNAMED -Xmx1g -XX:MaxDirectMemorySize=1g";
        boolean quick;
        Path out;

        static final String USAGE = """
                usage: bench/run-real-colo.sh [options]
                  --checkpoints N     measured checkpoints per run (default 100)
                  --warmup N          checkpoints per run not measured (default 5)
                  --reps N            repetitions of the whole matrix; measured checkpoints per cell and
                                      secondary = reps x checkpoints (default 1)
                  --cells LIST        light|heavy-plain|mfN (default light-plain,light-mf4,heavy-plain,heavy-mf4)
                  --secondaries LIST  qemu,ours[,ours-autobuf][,ours-early] (default qemu,ours); ours-autobuf = ours with
                                      -Dmultifdcolo.receiveBuffer=0 (kernel-autotuned receive window, a what-if);
                                      ours-early = ours with --loaded-before-flush (LOADED before the flush)
                  --transport T       our secondary's transport: auto|io_uring|epoll|nio (default auto)
                  --jar FILE          our service jar (default target/multifd-colo.jar)
                  --quick             smoke run: light-plain,light-mf4, 8 checkpoints, 2 warm-up
                  --out DIR           output directory (default bench/results/real-colo-DATE[-quick])
                """;

        static Options parse(String[] a) {
            Options o = new Options();
            List<String> cells = null;
            Map<String, Boolean> given = new HashMap<>();
            for (int i = 0; i < a.length; i++) {
                String k = a[i];
                given.put(k, true);
                if (k.equals("--quick")) {
                    o.quick = true;
                    continue;
                }
                if (i + 1 >= a.length) {
                    throw new IllegalArgumentException("missing value for " + k);
                }
                String v = a[++i];
                switch (k) {
                    case "--checkpoints" -> o.checkpoints = Integer.parseInt(v);
                    case "--warmup" -> o.warmup = Integer.parseInt(v);
                    case "--reps" -> o.reps = Integer.parseInt(v);
                    case "--cells" -> cells = List.of(v.split(","));
                    case "--secondaries" -> o.secondaries = List.of(v.split(","));
                    case "--transport" -> o.transport = v;
                    case "--jar" -> o.jar = v;
                    case "--ours-jvm-args" -> o.oursJvmArgs = v;
                    case "--out" -> o.out = Path.of(v);
                    default -> throw new IllegalArgumentException("unknown option " + k);
                }
            }
            if (o.quick) {
                if (!given.containsKey("--checkpoints")) {
                    o.checkpoints = 8;
                }
                if (!given.containsKey("--warmup")) {
                    o.warmup = 2;
                }
                if (cells == null) {
                    cells = List.of("light-plain", "light-mf4");
                }
            }
            for (String c : cells == null ? List.of("light-plain", "light-mf4", "heavy-plain", "heavy-mf4") : cells) {
                o.cells.add(Cell.parse(c.trim()));
            }
            for (String s : o.secondaries) {
                if (!List.of("qemu", "ours", "ours-autobuf", "ours-early").contains(s)) {
                    throw new IllegalArgumentException("--secondaries: qemu, ours, ours-autobuf, ours-early");
                }
            }
            if (o.out == null) {
                o.out = Path.of("bench", "results", "real-colo-" + LocalDate.now(ZoneOffset.UTC) + (o.quick ? "-quick" : ""));
            }
            return o;
        }
    }

    private final Options opt;
    private final PrintStream log = System.err;
    private final QemuBinary bin;

    private RealColoBench(Options opt, QemuBinary bin) {
        this.opt = opt;
        this.bin = bin;
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 2 && args[0].equals("--replot")) {
            replot(Path.of(args[1]));
            return;
        }
        Options opt;
        try {
            opt = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println(Options.USAGE);
            System.exit(2);
            return;
        }
        var bin = QemuBinaries.qemu111();
        if (bin.isEmpty()) {
            System.err.println("error: no QEMU 11.1: " + QemuBinaries.whyNot111());
            System.exit(2);
            return;
        }
        System.exit(new RealColoBench(opt, bin.get()).run());
    }

    private int run() throws Exception {
        Files.createDirectories(opt.out);
        long wall0 = System.nanoTime();
        long[] cpu0 = ProcStat.machineCpu();
        List<Run> runs = new ArrayList<>();
        int seq = 0;
        int status = 0;
        log.printf(Locale.ROOT, "real colo bench: %s, cells %s, secondaries %s, %d reps x (%d warm-up + %d measured)%n",
                bin, opt.cells.stream().map(Cell::name).toList(), opt.secondaries, opt.reps, opt.warmup, opt.checkpoints);
        for (int rep = 0; rep < opt.reps; rep++) {
            int k = 0;
            for (Cell c : opt.cells) {
                List<String> order = new ArrayList<>(opt.secondaries);
                if ((k++ + rep) % 2 == 1) {
                    java.util.Collections.reverse(order);
                }
                for (String sec : order) {
                    seq++;
                    try {
                        Run r = runOne(seq, rep, c, sec);
                        runs.add(r);
                        log.printf(Locale.ROOT, "  run %d %s/%s: %d checkpoints, median ram %.1f ms pause %.1f ms share %.1f ms (machine %.0f %% busy)%n",
                                seq, c.name, sec, r.cps.size(), median(r.cps, Cp::ramMs), median(r.cps, Cp::pauseMs),
                                median(r.cps, Cp::shareMs), r.machineBusy);
                    } catch (Exception e) {
                        status = 1;
                        log.println("run " + seq + " " + c.name + "/" + sec + " FAILED: " + e);
                        e.printStackTrace(log);
                        runs.add(new Run(seq, rep, c, sec, List.of(), 0, 0, 0, 0, 0, "FAILED: " + e.getMessage()));
                    }
                }
            }
        }
        long[] cpu1 = ProcStat.machineCpu();
        double wall = (System.nanoTime() - wall0) / 1e9;
        String md = report(runs, wall, cpu1[1] - cpu0[1] == 0 ? 0 : 100.0 * (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]));
        Files.writeString(opt.out.resolve("report.md"), md);
        System.out.println(md);
        log.printf(Locale.ROOT, "wrote %s (%.0f s)%n", opt.out, wall);
        return status;
    }

    // ------------------------------------------------------------------ one run

    private Run runOne(int seq, int rep, Cell c, String sec) throws Exception {
        String label = String.format(Locale.ROOT, "%02d-%s-%s", seq, c.name, sec);
        Path dir = opt.out.resolve("runs").resolve(label).toAbsolutePath();
        Files.createDirectories(dir);
        Path bios = c.guest().writeTo(dir.resolve("guest.bin"));
        Path trace = dir.resolve("primary-trace.log");
        Files.deleteIfExists(trace);
        log.printf("run %d: %s, secondary %s (%s)%n", seq, c.name, sec, c.guest());
        Qemu qsec = null;
        Process ours = null;
        Writer oursIn = null;
        try {
            int port;
            long secPid;
            if (sec.equals("qemu")) {
                qsec = Qemu.builder(bin).name("sec").args(DirtyGuest.qemuArgs(bios, RAM_MIB)).args("-incoming", "defer")
                        .quitGrace(Duration.ofSeconds(5)).start();
                Qmp q = qsec.qmp();
                q.setCapabilities(Map.of("x-colo", true, "return-path", true, "multifd", c.channels > 0));
                if (c.channels > 0) {
                    q.setParameters(new JsonObject().put("multifd-channels", c.channels));
                }
                q.migrateIncoming("tcp:127.0.0.1:0");
                port = q.incomingPort();
                secPid = qsec.pid();
            } else {
                port = freePort();
                List<String> cmd = new ArrayList<>();
                cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
                cmd.addAll(Arrays.asList(opt.oursJvmArgs.trim().split("\\s+")));
                if (sec.equals("ours-autobuf")) {
                    cmd.add("-Dmultifdcolo.receiveBuffer=0");
                }
                cmd.addAll(List.of("-jar", opt.jar, "receive", "--listen", "127.0.0.1:" + port, "--colo",
                        "--x-checkpoint-delay", "600", "--multifd-channels", Integer.toString(c.channels),
                        "--transport", opt.transport, "--quiet", "--out", dir.resolve("ours-out").toString()));
                if (sec.equals("ours-early")) {
                    cmd.add("--loaded-before-flush");
                }
                Files.writeString(dir.resolve("ours-cmdline.txt"), String.join(" ", cmd) + "\n");
                ours = new ProcessBuilder(cmd).redirectOutput(dir.resolve("ours-stdout.log").toFile())
                        .redirectError(dir.resolve("ours-stderr.log").toFile()).start();
                oursIn = new OutputStreamWriter(ours.getOutputStream(), StandardCharsets.UTF_8);
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (!Files.readString(dir.resolve("ours-stdout.log")).contains("listening on")) {
                    if (!ours.isAlive() || System.nanoTime() > end) {
                        throw new IOException("our secondary did not start; see " + dir);
                    }
                    Thread.sleep(50);
                }
                secPid = ours.pid();
            }
            List<String> traceArgs = new ArrayList<>();
            for (String e : TRACE_EVENTS) {
                traceArgs.addAll(List.of("-trace", e));
            }
            traceArgs.addAll(List.of("-msg", "timestamp=on", "-D", trace.toString()));
            try (Qemu pri = Qemu.builder(bin).name("pri").args(DirtyGuest.qemuArgs(bios, RAM_MIB)).args(traceArgs)
                    .quitGrace(Duration.ofSeconds(5)).start()) {
                Qmp q = pri.qmp();
                q.setCapabilities(Map.of("x-colo", true, "return-path", true, "multifd", c.channels > 0));
                JsonObject p = new JsonObject().put("x-checkpoint-delay", 600).put("max-bandwidth", 10_000_000_000L)
                        .put("downtime-limit", 2000);
                if (c.channels > 0) {
                    p.put("multifd-channels", c.channels);
                }
                q.setParameters(p);
                q.migrate("tcp:127.0.0.1:" + port);
                q.awaitMigrationStatus(Set.of("colo"), Duration.ofSeconds(120));
                long[] m0 = ProcStat.machineCpu();
                long p0 = ProcStat.procCpu(pri.pid());
                long s0 = ProcStat.procCpu(secPid);
                long t0 = System.nanoTime();
                int want = opt.warmup + opt.checkpoints + 1;   // the last one may be cut by the end of the run
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30 + 5L * want);
                while (countRequests(trace) < want) {
                    if (System.nanoTime() > deadline) {
                        throw new IOException("only " + countRequests(trace) + " checkpoints in time; see " + trace);
                    }
                    if (!pri.isAlive()) {
                        throw new IOException("the primary died; see " + pri.workDir());
                    }
                    if (ours != null && !ours.isAlive()) {
                        throw new IOException("our secondary exited (" + ours.exitValue() + ") after "
                                + countRequests(trace) + " checkpoint requests; see " + dir.resolve("ours-stderr.log"));
                    }
                    if (qsec != null && !qsec.isAlive()) {
                        throw new IOException("the QEMU secondary died; see " + qsec.workDir());
                    }
                    String st = q.queryMigrate().getString("status");
                    if (!"colo".equals(st)) {
                        throw new IOException("primary left colo: " + st + "; see " + trace);
                    }
                    Thread.sleep(500);
                }
                long[] m1 = ProcStat.machineCpu();
                double wall = (System.nanoTime() - t0) / 1e9;
                double priCpu = (ProcStat.procCpu(pri.pid()) - p0) / 1e9;
                double secCpu = (ProcStat.procCpu(secPid) - s0) / 1e9;
                double busy = m1[1] - m0[1] == 0 ? 0 : 100.0 * (m1[0] - m0[0]) / (m1[1] - m0[1]);
                double other = Math.max(0, (m1[0] - m0[0]) / 100.0 - priCpu - secCpu);   // USER_HZ 100
                String note = "";
                // end: failover on both sides (primary first, as the notes' runs did)
                q.execute("x-colo-lost-heartbeat");
                if (qsec != null) {
                    try {
                        qsec.qmp().execute("x-colo-lost-heartbeat");
                    } catch (RuntimeException e) {
                        note = "secondary failover: " + e.getMessage();
                    }
                } else {
                    try {
                        oursIn.write("failover\n");
                        oursIn.flush();
                    } catch (IOException e) {
                        // it may have failed over by itself already (connection closed)
                    }
                    if (!ours.waitFor(60, TimeUnit.SECONDS)) {
                        note = "our secondary did not exit within 60 s of failover";
                    } else if (ours.exitValue() != 0) {
                        note = "our secondary exited " + ours.exitValue();
                    }
                }
                List<Cp> all = parse(Files.readAllLines(trace));
                if (all.size() < opt.warmup + opt.checkpoints) {
                    throw new IOException("parsed " + all.size() + " complete checkpoints from " + trace);
                }
                List<Cp> measured = List.copyOf(all.subList(opt.warmup, opt.warmup + opt.checkpoints));
                return new Run(seq, rep, c, sec, measured, busy, other, priCpu, secCpu, wall, note);
            }
        } finally {
            if (qsec != null) {
                qsec.close();
            }
            if (ours != null) {
                if (ours.isAlive()) {
                    ours.destroy();
                    if (!ours.waitFor(10, TimeUnit.SECONDS)) {
                        ours.destroyForcibly();
                    }
                }
                deleteTree(dir.resolve("ours-out"));   // 160 MiB image written at failover: not a result
            }
            Files.deleteIfExists(bios);
        }
    }

    private static int countRequests(Path trace) throws IOException {
        if (!Files.exists(trace)) {
            return 0;
        }
        int n = 0;
        for (String l : Files.readAllLines(trace)) {
            if (l.contains("Send 'checkpoint-request'")) {
                n++;
            }
        }
        return n;
    }

    // ------------------------------------------------------------------ trace parsing

    static final Pattern LINE = Pattern.compile("^(\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d+Z) (\\S+) ?(.*)$");
    static final Pattern RAM = Pattern.compile("dirty(?:_pages)?[= ](\\d+),? done[= ](\\d)");
    static final Pattern RUNNING = Pattern.compile("running (\\d)");
    static final Pattern MSG = Pattern.compile("'([a-z-]+)'");

    /**
     * The complete checkpoints of a primary's trace, in order. A checkpoint starts at
     * {@code Send 'checkpoint-request'}; within it the first {@code running 0} is the stop, then
     * {@code ram_save_complete} done 0 / done 1, {@code vmstate-received}, {@code vmstate-loaded},
     * and the first {@code running 1} ends it. Precopy (before the first request) is ignored.
     */
    static List<Cp> parse(List<String> lines) {
        List<Cp> out = new ArrayList<>();
        long[] f = null;   // request, reply, stop, ram0, ram1, pages, received, loaded
        for (String l : lines) {
            Matcher m = LINE.matcher(l);
            if (!m.matches()) {
                continue;
            }
            long t = micros(m.group(1));
            String ev = m.group(2);
            String args = m.group(3);
            if (ev.equals("colo_send_message") && args.contains("'checkpoint-request'")) {
                f = new long[] {t, -1, -1, -1, -1, -1, -1, -1};
                continue;
            }
            if (f == null) {
                continue;
            }
            switch (ev) {
                case "colo_receive_message" -> {
                    Matcher mm = MSG.matcher(args);
                    if (mm.find()) {
                        switch (mm.group(1)) {
                            case "checkpoint-reply" -> f[1] = t;
                            case "vmstate-received" -> f[6] = t;
                            case "vmstate-loaded" -> f[7] = t;
                            default -> { }
                        }
                    }
                }
                case "ram_save_complete" -> {
                    Matcher mm = RAM.matcher(args);
                    if (mm.find() && f[2] >= 0) {
                        if (mm.group(2).equals("0") && f[3] < 0) {
                            f[3] = t;
                            f[5] = Long.parseLong(mm.group(1));
                        } else if (mm.group(2).equals("1") && f[3] >= 0 && f[4] < 0) {
                            f[4] = t;
                        }
                    }
                }
                case "vm_state_notify" -> {
                    Matcher mm = RUNNING.matcher(args);
                    if (mm.find()) {
                        if (mm.group(1).equals("0") && f[2] < 0) {
                            f[2] = t;
                        } else if (mm.group(1).equals("1") && f[2] >= 0) {
                            if (f[3] >= 0 && f[4] >= 0) {
                                out.add(new Cp(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], t));
                            }
                            f = null;
                        }
                    }
                }
                default -> { }
            }
        }
        return out;
    }

    static long micros(String iso) {
        Instant i = Instant.parse(iso);
        return i.getEpochSecond() * 1_000_000L + i.getNano() / 1000;
    }

    // ------------------------------------------------------------------ report

    interface Metric {
        double of(Cp c);
    }

    static double median(List<Cp> cps, Metric m) {
        return pct(cps, m, 50);
    }

    static double pct(List<Cp> cps, Metric m, double p) {
        double[] v = cps.stream().mapToDouble(m::of).sorted().toArray();
        if (v.length == 0) {
            return Double.NaN;
        }
        int i = (int) Math.ceil(p / 100.0 * v.length) - 1;
        return v[Math.max(0, Math.min(v.length - 1, i))];
    }

    static final Map<String, Metric> METRICS = new LinkedHashMap<>();

    static {
        METRICS.put("ram", Cp::ramMs);
        METRICS.put("pause", Cp::pauseMs);
        METRICS.put("share", Cp::shareMs);
        METRICS.put("received", Cp::receivedMs);
        METRICS.put("loaded", Cp::loadedMs);
        METRICS.put("reply", Cp::replyMs);
    }

    private String report(List<Run> runs, double wallS, double busyPct) throws IOException {
        StringBuilder sb = new StringBuilder();
        sb.append("# Real QEMU 11.1 COLO primary: QEMU 11.1 secondary vs ours, side by side\n\n");
        sb.append(String.format(Locale.ROOT, "%s; primary `-M pc -m %dM` TCG, dirty guest, x-checkpoint-delay 600,"
                        + " max-bandwidth 10 GB/s, downtime-limit 2000; %d warm-up + %d measured checkpoints per run, %d rep(s);"
                        + " our transport `%s`. Wall %.0f s, machine %.0f %% busy over the run (2 cores shared with other work).%n%n",
                bin, RAM_MIB, opt.warmup, opt.checkpoints, opt.reps, opt.transport, wallS, busyPct));
        sb.append("All times from the primary's trace (`-msg timestamp=on`, µs): ram = `ram_save_complete` done 0 → 1;"
                + " pause = `vm_state_notify` running 0 → 1; share = pause − ram; received = end of RAM → `vmstate-received`;"
                + " loaded = `vmstate-received` → `vmstate-loaded`. Values ms, **median** / p90 / p99 / max.\n\n");
        List<String> keys = new ArrayList<>();
        Map<String, List<Cp>> by = new LinkedHashMap<>();
        for (Cell c : opt.cells) {
            for (String s : opt.secondaries) {
                String k = c.name + " " + s;
                keys.add(k);
                by.put(k, new ArrayList<>());
            }
        }
        for (Run r : runs) {
            by.get(r.cell.name + " " + r.secondary).addAll(r.cps);
        }
        sb.append("| cell | secondary | n | pages | ram | pause | **share** | received | loaded |\n|---|---|---:|---:|---|---|---|---|---|\n");
        for (String k : keys) {
            List<Cp> cps = by.get(k);
            String[] kk = k.split(" ");
            sb.append("| ").append(kk[0]).append(" | ").append(kk[1]).append(" | ").append(cps.size()).append(" | ")
                    .append(String.format(Locale.ROOT, "%.0f", median(cps, cp -> cp.pages)));
            for (String m : List.of("ram", "pause", "share", "received", "loaded")) {
                Metric mt = METRICS.get(m);
                String v = String.format(Locale.ROOT, "%.1f / %.1f / %.1f / %.1f", pct(cps, mt, 50), pct(cps, mt, 90),
                        pct(cps, mt, 99), pct(cps, mt, 100));
                sb.append(" | ").append(m.equals("share") ? "**" + v.replaceFirst(" /", "** /") : v);
            }
            sb.append(" |\n");
        }
        sb.append("\n## Targets per cell (same run, medians)\n\n");
        sb.append("share target: ours ≤ 0.25 × QEMU's; ram target: ours no worse than QEMU's.\n\n");
        sb.append("| cell | ours | share QEMU | share ours | ours / QEMU | share met? | ram QEMU | ram ours | ours / QEMU | ram met? |\n"
                + "|---|---|---:|---:|---:|---|---:|---:|---:|---|\n");
        for (Cell c : opt.cells) {
          for (String sec : opt.secondaries) {
            if (sec.equals("qemu")) {
                continue;
            }
            List<Cp> qe = by.getOrDefault(c.name + " qemu", List.of());
            List<Cp> ou = by.getOrDefault(c.name + " " + sec, List.of());
            if (qe.isEmpty() || ou.isEmpty()) {
                continue;
            }
            double sq = median(qe, Cp::shareMs);
            double so = median(ou, Cp::shareMs);
            double rq = median(qe, Cp::ramMs);
            double ro = median(ou, Cp::ramMs);
            sb.append(String.format(Locale.ROOT, "| %s | %s | %.1f | %.1f | %.3f | %s | %.1f | %.1f | %.2f | %s |%n", c.name, sec, sq, so,
                    so / sq, so <= 0.25 * sq ? "yes" : "**no**", rq, ro, ro / rq, ro <= rq ? "yes" : "**no**"));
          }
        }
        sb.append("\n## Runs\n\n| run | rep | cell | secondary | checkpoints | median ram / pause / share | wall s | machine busy | primary CPU s | secondary CPU s | other CPU s | note |\n"
                + "|---:|---:|---|---|---:|---|---:|---:|---:|---:|---:|---|\n");
        for (Run r : runs) {
            sb.append(String.format(Locale.ROOT, "| %d | %d | %s | %s | %d | %.1f / %.1f / %.1f | %.0f | %.0f %% | %.1f | %.1f | %.1f | %s |%n",
                    r.seq, r.rep, r.cell.name, r.secondary, r.cps.size(), median(r.cps, Cp::ramMs), median(r.cps, Cp::pauseMs),
                    median(r.cps, Cp::shareMs), r.wallS, r.machineBusy, r.primaryCpuS, r.secondaryCpuS, r.otherCpuS, r.note));
        }
        // raw rows, histograms, plots
        try (PrintStream csv = new PrintStream(Files.newOutputStream(opt.out.resolve("checkpoints.csv")), false, StandardCharsets.UTF_8)) {
            csv.println("run,rep,cell,secondary,idx,request_us,dirty_pages,reply_ms,ram_ms,pause_ms,share_ms,received_ms,loaded_ms");
            for (Run r : runs) {
                int i = 0;
                for (Cp cp : r.cps) {
                    csv.printf(Locale.ROOT, "%d,%d,%s,%s,%d,%d,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f%n", r.seq, r.rep, r.cell.name,
                            r.secondary, i++, cp.request, cp.pages, cp.replyMs(), cp.ramMs(), cp.pauseMs(), cp.shareMs(),
                            cp.receivedMs(), cp.loadedMs());
                }
            }
        }
        List<String> plots = plots(opt.out, keys, by);
        sb.append("\nPlots: ").append(String.join(", ", plots.stream().map(p -> "[" + p + "](" + p + ")").toList()))
                .append(". Raw rows: [checkpoints.csv](checkpoints.csv). Histograms (HdrHistogram percentile distributions, ms): ");
        List<String> hs = new ArrayList<>();
        for (String k : keys) {
            String file = "percentiles-" + k.replace(' ', '-') + ".txt";
            try (PrintStream ps = new PrintStream(Files.newOutputStream(opt.out.resolve(file)), false, StandardCharsets.UTF_8)) {
                for (String m : List.of("ram", "pause", "share")) {
                    Histogram h = new Histogram(3_600_000_000L, 3);
                    for (Cp cp : by.get(k)) {
                        h.recordValue(Math.max(0, Math.round(METRICS.get(m).of(cp) * 1000)));
                    }
                    ps.println("# " + k + " " + m + " (values in µs, scaled to ms)");
                    if (h.getTotalCount() > 0) {
                        h.outputPercentileDistribution(ps, 5, 1000.0);
                    }
                    ps.println();
                }
            }
            hs.add("[" + k + "](" + file + ")");
        }
        sb.append(String.join(", ", hs)).append(". Per run: `runs/NN-CELL-SECONDARY/primary-trace.log`.\n");
        return sb.toString();
    }

    /** CDFs of ram, pause and share, one plot per workload (light, heavy) and metric, one line per cell x secondary. */
    static List<String> plots(Path dir, List<String> keys, Map<String, List<Cp>> by) throws IOException {
        List<String> plots = new ArrayList<>();
        for (String w : List.of("light", "heavy")) {
            List<String> ks = keys.stream().filter(k -> k.startsWith(w + "-")).toList();
            if (ks.isEmpty()) {
                continue;
            }
            for (String m : List.of("ram", "pause", "share")) {
                List<double[]> xs = new ArrayList<>();
                for (String k : ks) {
                    xs.add(by.get(k).stream().mapToDouble(METRICS.get(m)::of).toArray());
                }
                String name = "cdf-" + m + "-" + w + ".png";
                if (ColoPlots.cdf(dir.resolve(name), "CDF of " + m + " per checkpoint, " + w + " guest (primary's trace)",
                        m + " (ms, log scale)", ks, xs)) {
                    plots.add(name);
                }
            }
        }
        return plots;
    }

    /** {@code --replot DIR}: the plots again from {@code DIR/checkpoints.csv}. */
    static void replot(Path dir) throws IOException {
        Map<String, List<Cp>> by = new LinkedHashMap<>();
        List<String> lines = Files.readAllLines(dir.resolve("checkpoints.csv"));
        for (String l : lines.subList(1, lines.size())) {
            String[] f = l.split(",");
            long ram = Math.round(Double.parseDouble(f[8]) * 1000);
            long pause = Math.round(Double.parseDouble(f[9]) * 1000);
            by.computeIfAbsent(f[2] + " " + f[3], k -> new ArrayList<>())
                    .add(new Cp(0, 0, 0, 0, ram, Long.parseLong(f[6]), 0, 0, pause));
        }
        System.out.println(plots(dir, List.copyOf(by.keySet()), by));
    }

    // ------------------------------------------------------------------ helpers

    static int freePort() throws IOException {
        try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    private static void deleteTree(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.delete(p);
                } catch (IOException ignored) {
                    // best effort
                }
            });
        } catch (IOException ignored) {
            // best effort
        }
    }
}
