package dev.multifdcolo.bench.loopback;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.MigrationSender;
import dev.multifdcolo.primary.SendStats;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.secondary.Sizes;
import dev.multifdcolo.wire.Framing;
import jdk.jfr.Configuration;
import jdk.jfr.Recording;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * End-to-end loopback benchmark: our {@link MigrationSender} (in this JVM) streams a generated
 * guest image to our receiver or to a raw byte-counting sink, each in its own child JVM
 * ({@link LoopbackChild}), for several cells, interleaved round by round, and prints a Markdown
 * table (also written to {@code bench/results/loopback-DATE.md}).
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -Xmx2g -XX:MaxDirectMemorySize=4g \
 *        -cp target/multifd-colo-bench.jar dev.multifdcolo.bench.loopback.LoopbackBench \
 *        [--ram 1G] [--runs 3] [--warmup 1] [--cells recv-plain,sink-plain,recv-mf4,...] [--quick]
 *        [--transport auto|io_uring|epoll|nio] [--share-port] [--framing modern|legacy] [--seed 42] [--zero-ratio 0.25]
 *        [--jfr DIR] [--child-jvm-args "..."] [--no-verify] [--out FILE]
 * </pre>
 *
 * <p>Time of a run: from {@code System.nanoTime()} just before the sender connects its main
 * channel (t0, this JVM) to the child's {@code System.nanoTime()} when it has consumed the last
 * byte of the stream (t1): for the receiver, when its migration completes (EOF and vmdesc parsed,
 * every multifd sync paired); for the sink, its last read before all connections closed. Both
 * clocks are CLOCK_MONOTONIC of the same machine. GB/s = guest RAM bytes / (t1 - t0) / 10^9.
 */
public final class LoopbackBench {

    /** One measured run of one cell. */
    record Run(Cell cell, int round, long wallNanos, long senderNanos, SendStats sent, long childBytes,
               ProcCpu.Sample childCpu, ProcCpu.Sample senderCpu, long othersCpuNanos, Map<String, Long> threads,
               String extra) {
        double gbps(long ram) {
            return ram / (wallNanos / 1e9) / 1e9;
        }
    }

    private final Options opt;
    private final PrintStream log = System.err;

    private LoopbackBench(Options opt) {
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
        System.exit(new LoopbackBench(opt).run());
    }

    private int run() throws Exception {
        Path work = Files.createTempDirectory("loopback-bench");
        log.printf("loopback bench: %s RAM, %d round(s) + %d warm-up, cells %s, child logs in %s%n",
                SendStats.human(opt.ram), opt.runs, opt.warmup, opt.cells.stream().map(Cell::name).toList(), work);

        long g0 = System.nanoTime();
        GuestMemory image = GuestImages.generate(opt.ram, opt.seed, opt.zeroRatio);
        String digest = opt.verify ? image.fastDigest() : null;
        log.printf("image: %s generated in %.2f s (seed %d, zero ratio %.2f)%s%n", SendStats.human(opt.ram),
                (System.nanoTime() - g0) / 1e9, opt.seed, opt.zeroRatio, digest == null ? "" : ", digest " + digest);

        Map<Cell, Child> children = new LinkedHashMap<>();
        List<Path> shmDirs = new ArrayList<>();
        List<Run> runs = new ArrayList<>();
        Recording recording = null;
        try {
            for (Cell c : opt.cells) {
                List<String> args = new ArrayList<>(List.of(c.sink() ? "sink" : "receiver",
                        "--listen", "127.0.0.1:0", "--channels", Integer.toString(c.channels()),
                        "--compression", c.compression().qemuName(), "--transport", opt.transport,
                        "--instances", Integer.toString(opt.instances),
                        "--share-port", Boolean.toString(opt.sharePort || c.spread())));
                if (c.shm()) {
                    Path dir = Files.createTempDirectory(Path.of("/dev/shm"), "loopback-" + c.name().replace('+', '_') + "-");
                    shmDirs.add(dir);
                    args.addAll(List.of("--backing-dir", dir.toString()));
                }
                Map<String, String> env = new LinkedHashMap<>(opt.childEnv);
                if (c.thp()) {
                    env.put("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1");
                }
                Child ch = Child.start(c.name(), opt.childJvmArgs(), env, args, work.resolve(c.name() + ".log"),
                        Duration.ofSeconds(60));
                children.put(c, ch);
                log.printf("child %-16s pid %d port %d transport %s, %d event loops%n", c.name(), ch.pid(), ch.port,
                        ch.transport, ch.loops);
            }
            for (int w = 0; w < opt.warmup; w++) {
                for (Cell c : opt.cells) {
                    Run r = runOnce(c, children.get(c), -1 - w, image, digest);
                    log.printf("warm-up %d %-16s %6.3f GB/s%n", w + 1, c.name(), r.gbps(opt.ram));
                }
            }
            if (opt.jfrDir != null) {
                Files.createDirectories(opt.jfrDir);
                for (Child ch : children.values()) {
                    ch.send("jfr-start");
                    ch.await("jfr-started", Duration.ofSeconds(30));
                }
                recording = new Recording(Configuration.getConfiguration("profile"));
                recording.start();
            }
            Process perf = null;
            if (opt.perfFile != null) {
                // system-wide, kernel included: what JFR cannot see (page faults, socket copies, softirq)
                perf = new ProcessBuilder("perf", "record", "-a", "-g", "-F", "499", "-e", "cpu-clock", "-o",
                        opt.perfFile.toString()).redirectErrorStream(true)
                        .redirectOutput(work.resolve("perf.log").toFile()).start();
                Thread.sleep(1000);
            }
            for (int round = 1; round <= opt.runs; round++) {
                for (Cell c : opt.cells) {
                    Run r = runOnce(c, children.get(c), round, image, digest);
                    runs.add(r);
                    log.printf("round %d %-16s %6.3f GB/s  wall %.3f s  sender %.3f s  wire %s  child cpu %.2f+%.2f s"
                                    + "  sender cpu %.2f+%.2f s  others %.2f s%s%n", round, c.name(), r.gbps(opt.ram),
                            r.wallNanos() / 1e9, r.senderNanos() / 1e9, SendStats.human(r.sent().totalBytes()),
                            r.childCpu().userNanos() / 1e9, r.childCpu().sysNanos() / 1e9,
                            r.senderCpu().userNanos() / 1e9, r.senderCpu().sysNanos() / 1e9, r.othersCpuNanos() / 1e9,
                            r.extra().isEmpty() ? "" : "  " + r.extra());
                }
            }
            if (perf != null) {
                perf.destroy(); // SIGTERM: perf writes its data and exits
                perf.waitFor();
                log.println("perf data in " + opt.perfFile.toAbsolutePath() + " (perf report -i FILE --sort comm,dso,sym)");
            }
            if (opt.jfrDir != null) {
                recording.stop();
                recording.dump(opt.jfrDir.resolve("sender.jfr"));
                recording.close();
                recording = null;
                for (Map.Entry<Cell, Child> e : children.entrySet()) {
                    e.getValue().send("jfr-dump " + opt.jfrDir.resolve(e.getKey().name() + ".jfr").toAbsolutePath());
                    e.getValue().await("jfr-dumped", Duration.ofSeconds(60));
                }
                log.println("JFR recordings in " + opt.jfrDir.toAbsolutePath());
            }
        } finally {
            for (Child ch : children.values()) {
                ch.close();
            }
            for (Path d : shmDirs) {
                try (var files = Files.list(d)) {
                    for (Path f : (Iterable<Path>) files::iterator) {
                        Files.deleteIfExists(f);
                    }
                }
                Files.deleteIfExists(d);
            }
            image.close();
        }

        String transport = children.values().stream().map(c -> c.transport).distinct().reduce((a, b) -> a + "/" + b).orElse("?");
        int loops = children.values().stream().mapToInt(c -> c.loops).max().orElse(0);
        String md = Report.markdown(opt, runs, transport, loops, digest);
        System.out.println(md);
        Path out = opt.out != null ? opt.out : defaultOut();
        Files.createDirectories(out.toAbsolutePath().getParent());
        Files.writeString(out, md);
        log.println("wrote " + out.toAbsolutePath());
        return 0;
    }

    private Path defaultOut() {
        Path dir = Files.isDirectory(Path.of("bench")) ? Path.of("bench", "results") : Path.of("results");
        return dir.resolve("loopback-" + LocalDate.now() + (opt.quick ? "-quick" : "") + ".md");
    }

    private Run runOnce(Cell c, Child child, int round, GuestMemory image, String digest) throws Exception {
        SenderConfig cfg = SenderConfig.builder("127.0.0.1", child.port)
                .framing(opt.framing)
                .multifd(c.channels())
                .compression(c.compression())
                .zlibLevel(opt.zlibLevel)
                .zstdLevel(opt.zstdLevel)
                .progress(null)
                .build();
        long busy0 = ProcCpu.machineBusyNanos();
        ProcCpu.Sample child0 = ProcCpu.process(child.pid());
        ProcCpu.Sample self0 = ProcCpu.self();
        long t0 = System.nanoTime();
        SendStats sent;
        try (MigrationSender s = MigrationSender.connect(cfg, image)) {
            sent = s.migrate();
        }
        long ts = System.nanoTime();
        ProcCpu.Sample self1 = ProcCpu.self();
        Duration timeout = Duration.ofSeconds(opt.timeoutSeconds);
        Map<String, String> done = Child.fields(child.await("done ", timeout));
        Map<String, Long> threads = Child.threadCpu(child.await("threads", timeout));
        ProcCpu.Sample child1 = ProcCpu.process(child.pid());
        long busy1 = ProcCpu.machineBusyNanos();
        child.send(digest != null && !c.sink() ? "release digest" : "release");
        Map<String, String> rel = Child.fields(child.await("released", timeout));

        long t1 = Long.parseLong(done.get("t1"));
        long childBytes = Long.parseLong(done.get("bytes"));
        if (childBytes != sent.totalBytes()) {
            throw new IllegalStateException(c.name() + ": the child received " + childBytes + " bytes, the sender sent "
                    + sent.totalBytes());
        }
        if (digest != null && !c.sink() && !digest.equals(rel.get("digest"))) {
            throw new IllegalStateException(c.name() + ": received image digest " + rel.get("digest") + " != sent " + digest);
        }
        String extra = c.sink() ? "loops " + done.getOrDefault("loops", "?") : "";
        if (opt.pauseMillis > 0) {
            Thread.sleep(opt.pauseMillis);
        }
        ProcCpu.Sample childCpu = child1.minus(child0);
        ProcCpu.Sample selfCpu = self1.minus(self0);
        long others = Math.max(0, busy1 - busy0 - childCpu.totalNanos() - selfCpu.totalNanos());
        return new Run(c, round, t1 - t0, ts - t0, sent, childBytes, childCpu, selfCpu, others, threads, extra);
    }

    /** Command-line options. */
    static final class Options {
        static final String USAGE = """
                usage: LoopbackBench [options]
                  --ram SIZE            guest RAM to send (default 1G)
                  --runs N              measured rounds; each round runs every cell once (default 3)
                  --warmup N            unmeasured rounds first (default 1)
                  --cells LIST          comma list of [recv-|sink-](plain|mfN)[-zlib|-zstd][+spread][+thp][+shm]
                                        (default recv-plain,sink-plain,recv-mf4,sink-mf4,recv-mf4-zlib,recv-mf4-zstd)
                  --quick               64 MiB, 1 round (smoke test)
                  --transport T         receiver/sink transport: auto (io_uring > epoll > nio), io_uring, epoll, nio
                  --instances N         event loops / verticle instances in the child (0 = cores, as `receive`)
                  --share-port          child picks its port before deploying, so all instances share it and
                                        connections spread over the event loops (`receive` with port 0 puts
                                        every connection on one loop; see bench/README.md)
                  --framing F           modern (default) or legacy
                  --seed N              image seed (default 42)
                  --zero-ratio R        share of zero pages (default 0.25)
                  --zlib-level N        sender zlib level (default 1, QEMU's)
                  --zstd-level N        sender zstd level (default 1, QEMU's)
                  --child-jvm-args S    JVM flags of the child JVMs
                                        (default "--enable-native-access=ALL-UNNAMED -Xmx2g -XX:MaxDirectMemorySize=4g")
                  --child-env K=V       environment variable for the child JVMs (repeatable), e.g.
                                        GLIBC_TUNABLES=glibc.malloc.hugetlb=1
                  --jfr DIR             record JFR (profile settings) in every child and the sender over the
                                        measured rounds; DIR/<cell>.jfr, DIR/sender.jfr
                  --perf FILE           run `perf record -a -g -e cpu-clock` over the measured rounds (needs
                                        perf; add -XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit to the
                                        child flags for Java symbols)
                  --no-verify           skip the received-image digest check
                  --timeout SECONDS     per run (default 300)
                  --pause-ms N          pause between runs (default 250)
                  --out FILE            Markdown output (default bench/results/loopback-DATE[-quick].md)
                """;
        static final String DEFAULT_CHILD_JVM = "--enable-native-access=ALL-UNNAMED -Xmx2g -XX:MaxDirectMemorySize=4g";

        long ram = 1L << 30;
        int runs = 3;
        int warmup = 1;
        List<Cell> cells = Cell.DEFAULT.stream().map(Cell::parse).toList();
        boolean quick;
        String transport = "auto";
        int instances;
        boolean sharePort;
        Framing framing = Framing.MODERN;
        long seed = 42;
        double zeroRatio = 0.25;
        int zlibLevel = 1;
        int zstdLevel = 1;
        String childJvm = DEFAULT_CHILD_JVM;
        Map<String, String> childEnv = new LinkedHashMap<>();
        Path jfrDir;
        Path perfFile;
        boolean verify = true;
        long timeoutSeconds = 300;
        long pauseMillis = 250;
        Path out;
        boolean help;
        String commandLine;

        List<String> childJvmArgs() {
            return Arrays.stream(childJvm.trim().split("\\s+")).filter(s -> !s.isEmpty()).toList();
        }

        static Options parse(String[] args) {
            Options o = new Options();
            o.commandLine = String.join(" ", args);
            boolean ramSet = false;
            boolean runsSet = false;
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                switch (a) {
                    case "--quick" -> o.quick = true;
                    case "--no-verify" -> o.verify = false;
                    case "--share-port" -> o.sharePort = true;
                    case "-h", "--help" -> o.help = true;
                    default -> {
                        if (i + 1 >= args.length) {
                            throw new IllegalArgumentException("unknown option or missing value: " + a);
                        }
                        String v = args[++i];
                        switch (a) {
                            case "--ram" -> { o.ram = Sizes.parse(v); ramSet = true; }
                            case "--runs" -> { o.runs = Integer.parseInt(v); runsSet = true; }
                            case "--warmup" -> o.warmup = Integer.parseInt(v);
                            case "--cells" -> o.cells = Arrays.stream(v.split(",")).map(Cell::parse).distinct().toList();
                            case "--transport" -> o.transport = v;
                            case "--instances" -> o.instances = Integer.parseInt(v);
                            case "--framing" -> o.framing = Framing.valueOf(v.toUpperCase(Locale.ROOT));
                            case "--seed" -> o.seed = Long.parseLong(v);
                            case "--zero-ratio" -> o.zeroRatio = Double.parseDouble(v);
                            case "--zlib-level" -> o.zlibLevel = Integer.parseInt(v);
                            case "--zstd-level" -> o.zstdLevel = Integer.parseInt(v);
                            case "--child-jvm-args" -> o.childJvm = v;
                            case "--child-env" -> {
                                int eq = v.indexOf('=');
                                if (eq <= 0) {
                                    throw new IllegalArgumentException("--child-env wants NAME=VALUE");
                                }
                                o.childEnv.put(v.substring(0, eq), v.substring(eq + 1));
                            }
                            case "--jfr" -> o.jfrDir = Path.of(v);
                            case "--perf" -> o.perfFile = Path.of(v);
                            case "--timeout" -> o.timeoutSeconds = Long.parseLong(v);
                            case "--pause-ms" -> o.pauseMillis = Long.parseLong(v);
                            case "--out" -> o.out = Path.of(v);
                            default -> throw new IllegalArgumentException("unknown option " + a);
                        }
                    }
                }
            }
            if (o.quick) {
                if (!ramSet) {
                    o.ram = 64L << 20;
                }
                if (!runsSet) {
                    o.runs = 1;
                }
            }
            if (o.ram <= 0 || o.ram % 4096 != 0) {
                throw new IllegalArgumentException("--ram must be a positive multiple of 4 KiB");
            }
            if (o.runs < 1 || o.warmup < 0) {
                throw new IllegalArgumentException("--runs must be >= 1 and --warmup >= 0");
            }
            if (o.cells.isEmpty()) {
                throw new IllegalArgumentException("no cells");
            }
            return o;
        }

        String jvmFlagsOfThisJvm() {
            return String.join(" ", ManagementFactory.getRuntimeMXBean().getInputArguments());
        }
    }
}
