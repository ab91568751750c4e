package dev.multifdcolo.app.crash;

import dev.multifdcolo.memory.CheckpointJournal;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.GuestImages;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.wire.Framing;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Issue 8, crash consistency: the file-backed COLO standby runs as a separate JVM
 * ({@code receive --colo --backing-dir}), a {@link ColoPrimary} emulator (16 MiB, random dirty
 * sets, 0-2 ms intervals) drives checkpoints, and the standby is killed with SIGKILL
 * ({@link Process#destroyForcibly()}) at a random moment. After every kill the backing directory is
 * recovered ({@link CheckpointJournal#recover}, every 5th time through the CLI {@code --recover})
 * and its image digest must equal the primary's digest of the recovered epoch: the last epoch the
 * primary saw LOADED for, or the one in flight (its commit was durable but LOADED never arrived).
 * Never anything else, never a mix. {@code -Dcrash.kills=N} (default 20).
 */
class StandbyCrashTest {
    static final long RAM = 16L << 20;
    static final Pattern RECOVERED = Pattern.compile("recovered epoch (\\d+), digest ([0-9a-f]{8})");

    @Test
    void killNineAtRandomPointsDuringCheckpoints(@TempDir Path tmp) throws Exception {
        int kills = Integer.getInteger("crash.kills", 20);
        long seed = Long.getLong("crash.seed", 8);
        SplittableRandom rnd = new SplittableRandom(seed);
        Path backing = tmp.resolve("backing");
        TreeMap<Long, Integer> epochs = new TreeMap<>();
        int inFlight = 0;
        int redone = 0;
        long checkpoints = 0;
        List<Double> recoverMs = new ArrayList<>();
        List<Double> pauseMs = new ArrayList<>();   // the journal's msync/fsync run inside every pause
        long t0 = System.nanoTime();
        try (GuestMemory mem = GuestImages.generate(RAM, seed, 0.3)) {
            for (int i = 0; i < kills; i++) {
                int port = freePort();
                Path log = tmp.resolve("standby-" + i + ".log");
                int channels = rnd.nextBoolean() ? 0 : 2;
                Framing framing = rnd.nextBoolean() ? Framing.MODERN : Framing.LEGACY;
                long delayMicros = rnd.nextLong(0, 400_000);
                Process standby = java(log, "receive", "--colo", "--listen", "127.0.0.1:" + port,
                        "--backing-dir", backing.toString(), "--out", tmp.resolve("out").toString(),
                        "--multifd-channels", String.valueOf(channels), "--instances", "2", "--quiet",
                        "--x-checkpoint-delay", "100", "--heartbeat-timeout", "20000");
                ColoPrimary p = null;
                try {
                    awaitLine(standby, log, "listening on");
                    SenderConfig cfg = SenderConfig.builder("127.0.0.1", port).framing(framing).multifd(channels)
                            .stallTimeout(Duration.ofSeconds(20)).connectTimeout(Duration.ofSeconds(5)).build();
                    p = ColoPrimary.connect(cfg, mem, Workloads.random(seed * 1000 + i, 1500),
                            ColoPrimary.Options.defaults().withReplyTimeout(Duration.ofSeconds(20)));
                    p.start();
                    // the kill: a random moment once the standby is in COLO (epoch 0 committed)
                    Thread killer = Thread.ofPlatform().daemon().start(() -> {
                        try {
                            Thread.sleep(Duration.ofNanos(delayMicros * 1000));
                        } catch (InterruptedException ignored) {
                            // kill now
                        }
                        standby.destroyForcibly();
                    });
                    while (true) {
                        p.runGuest();
                        int sleep = rnd.nextInt(3);
                        if (sleep > 0) {
                            Thread.sleep(sleep);
                        }
                        try {
                            pauseMs.add(p.checkpoint().pauseNanos() / 1e6);
                        } catch (IOException e) {
                            break;
                        }
                    }
                    killer.join();
                    assertTrue(standby.waitFor(20, TimeUnit.SECONDS), "standby still running");
                    assertEquals(137, standby.exitValue(), "killed by SIGKILL");
                } finally {
                    standby.destroyForcibly();
                    if (p != null) {
                        p.kill();
                    }
                }
                long committed = p.epoch();
                checkpoints += committed;
                String inFlightDigest = mem.fastDigest();   // the pages of the failed checkpoint are in memory
                long epoch;
                String digest;
                long r0 = System.nanoTime();
                if (i % 5 == 0) {
                    // the CLI: receive --colo --backing-dir D --recover --out O
                    Path rlog = tmp.resolve("recover-" + i + ".log");
                    Process rec = java(rlog, "receive", "--colo", "--recover", "--backing-dir", backing.toString(),
                            "--out", tmp.resolve("recovered-" + i).toString());
                    assertTrue(rec.waitFor(60, TimeUnit.SECONDS), "recover hangs");
                    String out = Files.readString(rlog);
                    assertEquals(0, rec.exitValue(), out);
                    Matcher m = RECOVERED.matcher(out);
                    assertTrue(m.find(), out);
                    epoch = Long.parseLong(m.group(1));
                    digest = m.group(2);
                    redone += out.contains("interrupted flush redone") ? 1 : 0;
                    try (CheckpointJournal.Recovery again = CheckpointJournal.recover(backing)) {
                        assertEquals(epoch, again.epoch(), "recovery is idempotent");
                        assertEquals(digest, again.memory().fastDigest(), "recovery is idempotent");
                    }
                } else {
                    try (CheckpointJournal.Recovery r = CheckpointJournal.recover(backing)) {
                        epoch = r.epoch();
                        digest = r.memory().fastDigest();
                        redone += r.redone() ? 1 : 0;
                    }
                }
                recoverMs.add((System.nanoTime() - r0) / 1e6);
                String where = String.format("kill %d (%s multifd %d, after %d us): primary saw LOADED up to epoch %d,"
                        + " standby recovered epoch %d", i, framing, channels, delayMicros, committed, epoch);
                if (epoch == committed) {
                    assertEquals(p.digest(committed), digest, where);
                } else if (epoch == committed + 1) {
                    assertEquals(inFlightDigest, digest, where + " (the checkpoint in flight)");
                    inFlight++;
                } else {
                    fail(where);
                }
                epochs.merge(epoch, 1, Integer::sum);
            }
        }
        recoverMs.sort(null);
        pauseMs.sort(null);
        System.out.printf("standby kill -9: %d kills in %.1f s, %d checkpoints committed in all; recovered the epoch"
                        + " in flight %d times, redid an interrupted flush %d times; recovery median %.1f ms, max %.1f ms"
                        + " (CLI runs include JVM start); epochs recovered %s; checkpoint pause (up to 1500 dirty pages,"
                        + " journaled) median %.1f ms, p90 %.1f ms%n", kills, (System.nanoTime() - t0) / 1e9,
                checkpoints, inFlight, redone, recoverMs.get(recoverMs.size() / 2), recoverMs.getLast(), epochs,
                pct(pauseMs, 0.5), pct(pauseMs, 0.9));
    }

    private static double pct(List<Double> sorted, double q) {
        return sorted.isEmpty() ? 0 : sorted.get(Math.min(sorted.size() - 1, (int) (q * sorted.size())));
    }

    private static Process java(Path log, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-Xmx512m", "-Dio.netty.iouring.pollAddMultishotEnabled=false",
                "-cp", System.getProperty("java.class.path"), "dev.multifdcolo.app.Main"));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    private static void awaitLine(Process p, Path log, String text) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            if (Files.exists(log) && Files.readString(log).contains(text)) {
                return;
            }
            if (!p.isAlive()) {
                fail("standby exited: " + Files.readString(log));
            }
            Thread.sleep(20);
        }
        fail("no '" + text + "' from the standby: " + Files.readString(log));
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }
}
