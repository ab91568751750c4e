package dev.multifdcolo.app.cli;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.MemoryLimitException;
import dev.multifdcolo.primary.ColoCheckpoint;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.ColoSummary;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.MigrationSender;
import dev.multifdcolo.primary.SendStats;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.Workload;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.encode.NoneMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code send}: act as a QEMU migration source ("primary emulator") and send a RAM image to a
 * destination listening with {@code -incoming tcp:HOST:PORT} (a real QEMU or our receiver).
 * With {@code --colo} it is a COLO primary: precopy, then {@code --checkpoints} checkpoints every
 * {@code --interval-ms} of what a seeded {@code --workload} dirtied, one line per checkpoint and a
 * summary (memory-transfer and pause times: mean, p50, p99).
 * Exit codes: 0 sent (and, with the return path, confirmed by SHUT(0); COLO: every checkpoint
 * confirmed by VMSTATE_LOADED); 1 the migration failed; 2 bad arguments or image.
 */
@Command(name = "send", mixinStandardHelpOptions = true,
        description = "Send a RAM image as a QEMU precopy migration (plain or multifd, QEMU 7.2 or 8.1+ framing),"
                + " or act as a COLO primary (--colo).")
public final class SendCommand implements Callable<Integer> {

    @Option(names = "--connect", required = true, paramLabel = "HOST:PORT", description = "destination address")
    String connect;

    @Option(names = "--multifd-channels", defaultValue = "0",
            description = "multifd channels, 0 = plain precopy (default ${DEFAULT-VALUE})")
    int channels;

    @Option(names = "--multifd-compression", defaultValue = "none", description = "none, zlib or zstd (default ${DEFAULT-VALUE})")
    String compression;

    @Option(names = "--zlib-level", defaultValue = "1", description = "0-9 (default ${DEFAULT-VALUE}, as QEMU)")
    int zlibLevel;

    @Option(names = "--zstd-level", defaultValue = "1", description = "0-20 (default ${DEFAULT-VALUE}, as QEMU)")
    int zstdLevel;

    @Option(names = "--framing", defaultValue = "modern",
            description = "legacy (QEMU 7.2 destination) or modern (QEMU 8.1+/11.1 defaults) (default ${DEFAULT-VALUE})")
    String framing;

    @Option(names = "--return-path", description = "send OPEN_RETURN_PATH + PING(1) and succeed only after the destination's SHUT(0)")
    boolean returnPath;

    @Option(names = "--uuid", description = "VM UUID for the multifd hellos (default all zero, like a QEMU without -uuid)")
    String uuid;

    @Option(names = "--machine", defaultValue = "none", description = "machine type in the configuration record (default ${DEFAULT-VALUE})")
    String machine;

    @Option(names = "--run-state", defaultValue = "prelaunch",
            description = "run state in globalstate; the destination switches to it after the load (default ${DEFAULT-VALUE})")
    String runState;

    @Option(names = {"--ram", "--generate"}, paramLabel = "SIZE",
            description = "generate a seeded image of SIZE (e.g. 64M, 1G); with --image: the block size")
    String ram;

    @Option(names = "--seed", defaultValue = "1", description = "generator seed (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--zero-ratio", defaultValue = "0.3", description = "generator: share of zero pages (default ${DEFAULT-VALUE})")
    double zeroRatio;

    @Option(names = "--image", paramLabel = "[NAME=]FILE",
            description = "raw image of one RAMBlock (repeatable); NAME defaults to --block")
    List<String> images;

    @Option(names = "--block", defaultValue = "ram", description = "block name for --ram and an unnamed --image (default ${DEFAULT-VALUE})")
    String block;

    @Option(names = "--shut-timeout", defaultValue = "60", description = "seconds to wait for SHUT with --return-path (default ${DEFAULT-VALUE})")
    long shutTimeout;

    @Option(names = "--stall-timeout", defaultValue = "30",
            description = "fail when the destination stops reading for this many seconds; 0 = wait forever (default ${DEFAULT-VALUE})")
    long stallTimeout;

    @Option(names = "--quiet", description = "no progress lines (COLO: no per-checkpoint lines, only the summary)")
    boolean quiet;

    @Option(names = "--colo", description = "COLO primary: precopy, then checkpoints (legacy framing sends ENABLE_COLO"
            + " like QEMU 7.2; modern uses the return path like 11.1)")
    boolean colo;

    @Option(names = "--checkpoints", defaultValue = "100", description = "COLO: checkpoints to send (default ${DEFAULT-VALUE})")
    int checkpoints;

    @Option(names = "--interval-ms", defaultValue = "600",
            description = "COLO: x-checkpoint-delay, from the end of one checkpoint to the next (default ${DEFAULT-VALUE})")
    long intervalMs;

    @Option(names = "--workload", defaultValue = "idle",
            description = "COLO: idle (~1k random pages per interval), load (bursty, ~7k pages on average, up to ~20k:"
                    + " streaming writes, random pages, zeroed runs) or random (test mix) (default ${DEFAULT-VALUE});"
                    + " seeded by --seed")
    String workload;

    @Option(names = "--no-digest", description = "COLO: do not compute the memory digest per checkpoint")
    boolean noDigest;

    @Option(names = "--reply-timeout", defaultValue = "30",
            description = "COLO: seconds to wait for each message of the secondary (default ${DEFAULT-VALUE})")
    long replyTimeout;

    @Override
    public Integer call() {
        PrintStream err = System.err;
        SenderConfig cfg;
        try {
            cfg = config(err);
        } catch (IllegalArgumentException e) {
            err.println("error: " + e.getMessage());
            return 2;
        }
        GuestMemory mem;
        long t0 = System.nanoTime();
        try {
            mem = image();
        } catch (IllegalArgumentException | IOException | MemoryLimitException e) {
            err.println("error: " + e.getMessage());
            return 2;
        }
        if (colo) {
            try (mem) {
                return runColo(cfg, mem);
            }
        }
        try (mem) {
            if (!quiet) {
                err.printf(Locale.ROOT, "image: %s in %d block(s), digest %s, ready in %.2f s%n",
                        SendStats.human(mem.totalBytes()), mem.blocks().size(), mem.digest().substring(0, 16),
                        (System.nanoTime() - t0) / 1e9);
            }
            try (MigrationSender s = MigrationSender.connect(cfg, mem)) {
                SendStats st = s.migrate();
                System.out.println("sent " + SendStats.human(mem.totalBytes()) + " of RAM to " + connect + " ("
                        + describe(cfg) + "): " + st.summary());
                return 0;
            }
        } catch (IOException e) {
            err.println("error: " + oneLine(e.getMessage()));
            return 1;
        } catch (RuntimeException e) {
            err.println("error: " + oneLine(String.valueOf(e)));
            return 1;
        }
    }

    /** COLO mode: precopy, then the checkpoints; per-checkpoint lines on stdout, then the summary. */
    private int runColo(SenderConfig cfg, GuestMemory mem) {
        PrintStream err = System.err;
        PrintStream out = System.out;
        Workload w = Workloads.parse(workload, seed);
        ColoPrimary.Options o = ColoPrimary.Options.defaults().withDigests(!noDigest)
                .withReplyTimeout(Duration.ofSeconds(replyTimeout));
        List<ColoCheckpoint> done = new ArrayList<>();
        long t0 = System.nanoTime();
        ColoPrimary p = null;
        try {
            p = ColoPrimary.connect(cfg, mem, w, o);
            String d = p.start();
            out.printf(Locale.ROOT, "colo: precopy of %s to %s (%s) done in %.2f s%s; %d checkpoints every %d ms,"
                            + " workload %s, seed %d%n", SendStats.human(mem.totalBytes()), connect, describe(p.config()),
                    (System.nanoTime() - t0) / 1e9, d == null ? "" : ", digest " + d, checkpoints, intervalMs,
                    w.name(), seed);
            p.run(checkpoints, Duration.ofMillis(intervalMs), c -> {
                done.add(c);
                if (!quiet) {
                    out.println(c.line());
                }
            });
            p.close();
            out.println("summary: " + ColoSummary.of(done).text().replace("\n", "\nsummary: "));
            return 0;
        } catch (IOException | RuntimeException e) {
            if (p != null) {
                p.kill();
            }
            if (!done.isEmpty()) {
                out.println("summary: " + ColoSummary.of(done).text().replace("\n", "\nsummary: "));
            }
            String m = e instanceof IOException ? e.getMessage() : String.valueOf(e);
            err.println("error: " + oneLine(m) + " (after " + done.size() + " checkpoints)");
            return 1;
        }
    }

    private SenderConfig config(PrintStream err) {
        int colon = connect.lastIndexOf(':');
        if (colon <= 0 || colon == connect.length() - 1) {
            throw new IllegalArgumentException("--connect needs HOST:PORT, got '" + connect + "'");
        }
        String host = connect.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(connect.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad port in --connect '" + connect + "'");
        }
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException("port out of range in --connect '" + connect + "'");
        }
        Framing f = switch (framing.toLowerCase(Locale.ROOT)) {
            case "legacy" -> Framing.LEGACY;
            case "modern" -> Framing.MODERN;
            default -> throw new IllegalArgumentException("--framing must be legacy or modern, got '" + framing + "'");
        };
        if (colo) {
            if (checkpoints < 0 || intervalMs < 0 || replyTimeout <= 0) {
                throw new IllegalArgumentException("--checkpoints and --interval-ms must be >= 0, --reply-timeout > 0");
            }
            if (returnPath) {
                throw new IllegalArgumentException("--return-path does not apply to --colo: modern framing always uses it"
                        + " (QEMU 11.1), legacy never does (QEMU 7.2 sends ENABLE_COLO instead)");
            }
            Workloads.parse(workload, seed);
        }
        Compression c = Compression.fromQemuName(compression.toLowerCase(Locale.ROOT));
        if (c != Compression.NONE && channels == 0) {
            throw new IllegalArgumentException("--multifd-compression needs --multifd-channels > 0");
        }
        SenderConfig.Builder b = SenderConfig.builder(host, port)
                .framing(f).multifd(channels).compression(c).zlibLevel(zlibLevel).zstdLevel(zstdLevel)
                .returnPath(returnPath).machine(machine)
                .devices(new NoneMachine(f == Framing.LEGACY ? NoneMachine.Flavor.QEMU_7_2 : NoneMachine.Flavor.QEMU_11_1,
                        runState, 0, 0))
                .shutTimeout(Duration.ofSeconds(shutTimeout))
                .stallTimeout(Duration.ofSeconds(stallTimeout));
        if (uuid != null) {
            b.uuid(uuid);
        }
        if (!quiet && !colo) {
            b.progress(st -> err.printf(Locale.ROOT, "progress: %s: %s sent, pages %d normal + %d zero, %d packets, %s/s%n",
                    st.phase(), SendStats.human(st.totalBytes()), st.normalPages(), st.zeroPages(), st.packets(),
                    SendStats.human((long) st.bytesPerSecond())));
        }
        return b.build();
    }

    private GuestMemory image() throws IOException, MemoryLimitException {
        long size = ram == null ? 0 : parseSize(ram);
        if (images == null || images.isEmpty()) {
            if (ram == null) {
                throw new IllegalArgumentException("give --ram SIZE (generated image) or --image FILE");
            }
            return GuestImages.generate(block, size, seed, zeroRatio);
        }
        Map<String, Path> files = new LinkedHashMap<>();
        for (String spec : images) {
            int eq = spec.indexOf('=');
            String name = eq > 0 ? spec.substring(0, eq) : block;
            Path file = Path.of(eq > 0 ? spec.substring(eq + 1) : spec);
            if (!java.nio.file.Files.isRegularFile(file) || !java.nio.file.Files.isReadable(file)) {
                throw new IllegalArgumentException("cannot read image file " + file);
            }
            if (files.put(name, file) != null) {
                throw new IllegalArgumentException("block '" + name + "' given twice; use NAME=FILE");
            }
        }
        return GuestImages.load(files, size);
    }

    /** "64M", "1G", "4096", "2GiB" → bytes; must be a positive multiple of 4 KiB. */
    static long parseSize(String s) {
        String t = s.trim().toUpperCase(Locale.ROOT).replace("IB", "").replace("B", "");
        long mul = 1;
        if (!t.isEmpty()) {
            char u = t.charAt(t.length() - 1);
            int shift = switch (u) {
                case 'K' -> 10;
                case 'M' -> 20;
                case 'G' -> 30;
                case 'T' -> 40;
                default -> 0;
            };
            if (shift > 0) {
                mul = 1L << shift;
                t = t.substring(0, t.length() - 1);
            }
        }
        long v;
        try {
            v = Math.multiplyExact(Long.parseLong(t.trim()), mul);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("bad size '" + s + "'");
        }
        if (v <= 0 || v % 4096 != 0) {
            throw new IllegalArgumentException("size '" + s + "' must be a positive multiple of 4 KiB");
        }
        return v;
    }

    private static String describe(SenderConfig c) {
        return c.framing().name().toLowerCase(Locale.ROOT) + ", "
                + (c.multifd() ? "multifd " + c.multifdChannels() + " " + c.compression().qemuName() : "plain")
                + (c.returnPath() ? ", return path" : "");
    }

    private static String oneLine(String s) {
        return s == null ? "unknown error" : s.replace('\n', ' ').strip();
    }
}
