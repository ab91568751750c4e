package dev.multifdcolo.qemu;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * One QEMU process for a test, in its own work directory, with a QMP connection and optionally
 * a qtest connection.
 *
 * <pre>{@code
 * try (Qemu vm = Qemu.builder(QemuBinaries.assume111()).name("src").qtest(true)
 *         .args(Qemu.MINIMAL_MACHINE).start()) {
 *     vm.qtest().memset(0x1000, 4096, 0xab);
 *     byte[] ram = vm.qmp().pmemsave(0, 64 << 20);
 * }
 * }</pre>
 *
 * <p>{@link #close()} asks QEMU to {@code quit}, then sends SIGTERM after a grace period, then
 * SIGKILL; a JVM shutdown hook does the same (forcibly) for instances that were never closed.
 * The work directory is deleted on close unless the system property {@value #KEEP_PROPERTY} is
 * {@code true}; {@link #log()} still works after close.
 */
public final class Qemu implements AutoCloseable {

    /** Set to {@code true} to keep work directories (logs, sockets) after close, for debugging. */
    public static final String KEEP_PROPERTY = "mfc.qemu.keepWorkDir";

    /**
     * A machine that works the same on 7.2 and 11.1: no board devices, one TCG CPU (qtest memory
     * accesses crash QEMU without a CPU), 64 MiB RAM at guest-physical 0, paused, no display.
     */
    public static final List<String> MINIMAL_MACHINE = List.of(
            "-M", "none", "-cpu", "qemu64,apic-id=0", "-m", "64M", "-S", "-nodefaults", "-display", "none");

    /** Processes not closed yet, with the work directory to remove (if we own it). */
    private static final Map<Process, Optional<Path>> LIVE = new ConcurrentHashMap<>();

    static {
        Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().name("qemu-reaper").unstarted(() -> {
            LIVE.forEach((p, dir) -> {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
            });
            LIVE.forEach((p, dir) -> {
                try {
                    p.waitFor(2, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                if (!Boolean.getBoolean(KEEP_PROPERTY)) {
                    dir.ifPresent(Qemu::deleteTree);
                }
            });
        }));
    }

    private final QemuBinary binary;
    private final String name;
    private final Path workDir;
    private final boolean ownsWorkDir;
    private final List<String> commandLine;
    private final Process process;
    private final Duration quitGrace;
    private final Duration termGrace;
    private volatile Qmp qmp;
    private volatile Qtest qtest;
    private volatile boolean closed;
    private volatile String finalLog;

    private Qemu(Builder b, Path workDir, boolean ownsWorkDir, List<String> commandLine, Process process) {
        this.binary = b.binary;
        this.name = b.name;
        this.workDir = workDir;
        this.ownsWorkDir = ownsWorkDir;
        this.commandLine = List.copyOf(commandLine);
        this.process = process;
        this.quitGrace = b.quitGrace;
        this.termGrace = b.termGrace;
    }

    /** Starts building a QEMU run with {@code binary}. */
    public static Builder builder(QemuBinary binary) {
        return new Builder(binary);
    }

    /** Starts {@code binary} with {@code args} (plus the QMP socket), without qtest. */
    public static Qemu start(QemuBinary binary, String... args) throws IOException {
        return builder(binary).args(args).start();
    }

    /** Configuration for one QEMU run. */
    public static final class Builder {
        private final QemuBinary binary;
        private final List<String> args = new ArrayList<>();
        private final Map<String, String> env = new LinkedHashMap<>();
        private String name = "qemu";
        private boolean qtest;
        private Path workDir;
        private Duration startTimeout = Duration.ofSeconds(30);
        private Duration quitGrace = Duration.ofSeconds(3);
        private Duration termGrace = Duration.ofSeconds(3);

        private Builder(QemuBinary binary) {
            this.binary = Objects.requireNonNull(binary, "binary");
        }

        /** Appends QEMU arguments (the QMP/qtest sockets are added automatically). */
        public Builder args(String... more) {
            return args(List.of(more));
        }

        /** Appends QEMU arguments. */
        public Builder args(List<String> more) {
            args.addAll(more);
            return this;
        }

        /** A short label for thread names, temp dirs and messages (default "qemu"). */
        public Builder name(String name) {
            this.name = name.replaceAll("[^A-Za-z0-9_.-]", "_");
            return this;
        }

        /** Adds {@code -qtest unix:<dir>/qtest.sock,server=on,wait=off -qtest-log /dev/null} and connects to it. */
        public Builder qtest(boolean enabled) {
            this.qtest = enabled;
            return this;
        }

        /** Uses this (existing) directory instead of a fresh temp dir; it is not deleted on close. */
        public Builder workDir(Path dir) {
            this.workDir = dir;
            return this;
        }

        /** Adds an environment variable for the QEMU process. */
        public Builder env(String key, String value) {
            env.put(key, value);
            return this;
        }

        /** How long QEMU may take to open its sockets and answer QMP (default 30 s). */
        public Builder startTimeout(Duration timeout) {
            this.startTimeout = timeout;
            return this;
        }

        /** How long close() waits after QMP {@code quit} before SIGTERM (default 3 s). */
        public Builder quitGrace(Duration grace) {
            this.quitGrace = grace;
            return this;
        }

        /** How long close() waits after SIGTERM before SIGKILL (default 3 s). */
        public Builder termGrace(Duration grace) {
            this.termGrace = grace;
            return this;
        }

        /**
         * Starts QEMU and connects QMP (and qtest, if asked). On failure nothing is left running,
         * and the exception message includes QEMU's output.
         */
        public Qemu start() throws IOException {
            boolean owns = workDir == null;
            Path dir = owns ? Files.createTempDirectory(socketFriendlyTemp(), "mfc-" + name + "-") : workDir;
            Files.createDirectories(dir);
            Path qmpSocket = dir.resolve("qmp.sock");
            Path qtestSocket = dir.resolve("qtest.sock");
            if (qtestSocket.toAbsolutePath().toString().length() > 100) {
                throw new IllegalArgumentException("work dir path too long for unix sockets: " + dir);
            }
            List<String> cmd = new ArrayList<>();
            cmd.add(binary.executable().toString());
            cmd.addAll(args);
            cmd.addAll(List.of("-qmp", "unix:" + qmpSocket.toAbsolutePath() + ",server=on,wait=off"));
            if (qtest) {
                cmd.addAll(List.of("-qtest", "unix:" + qtestSocket.toAbsolutePath() + ",server=on,wait=off",
                        "-qtest-log", "/dev/null"));
            }
            Files.writeString(dir.resolve("cmdline.txt"), String.join(" ", cmd) + "\n");
            ProcessBuilder pb = new ProcessBuilder(cmd)
                    .directory(dir.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectOutput(dir.resolve("stdout.log").toFile())
                    .redirectError(dir.resolve("stderr.log").toFile());
            pb.environment().putAll(env);
            Process process = pb.start();
            LIVE.put(process, owns ? Optional.of(dir) : Optional.empty());
            Qemu qemu = new Qemu(this, dir, owns, cmd, process);
            try {
                qemu.qmp = Qmp.connect(qmpSocket, dir, startTimeout, process::isAlive, name);
                if (qtest) {
                    qemu.qtest = Qtest.connect(qtestSocket, startTimeout, process::isAlive);
                }
                return qemu;
            } catch (Throwable e) {
                String log = qemu.log();
                qemu.close();
                String detail = "QEMU " + name + " (" + binary.version() + ") did not come up"
                        + (process.isAlive() ? "" : ", exit code " + process.exitValue()) + ": " + e.getMessage()
                        + "\n" + log;
                if (e instanceof IOException) {
                    throw new IOException(detail, e);
                }
                if (e instanceof Error error) {
                    throw error;
                }
                throw new IllegalStateException(detail, e);
            }
        }

        private static Path socketFriendlyTemp() {
            Path tmp = Path.of(System.getProperty("java.io.tmpdir"));
            // unix socket paths are limited to ~108 bytes
            return tmp.toAbsolutePath().toString().length() > 60 ? Path.of("/tmp") : tmp;
        }
    }

    // ------------------------------------------------------------------ accessors

    public QemuBinary binary() {
        return binary;
    }

    public String name() {
        return name;
    }

    /** The QMP connection (negotiated, ready for commands). */
    public Qmp qmp() {
        return qmp;
    }

    /** The qtest connection. @throws IllegalStateException if the instance was started without qtest */
    public Qtest qtest() {
        if (qtest == null) {
            throw new IllegalStateException(name + " was started without qtest(true)");
        }
        return qtest;
    }

    /** This instance's work directory (sockets, logs, pmemsave files). */
    public Path workDir() {
        return workDir;
    }

    /** The complete command line QEMU was started with. */
    public List<String> commandLine() {
        return commandLine;
    }

    public long pid() {
        return process.pid();
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** QEMU's exit code, if it has exited. */
    public OptionalInt exitCode() {
        return process.isAlive() ? OptionalInt.empty() : OptionalInt.of(process.exitValue());
    }

    /** Waits up to {@code timeout} for QEMU to exit on its own; true if it has. */
    public boolean awaitExit(Duration timeout) {
        try {
            return process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return !process.isAlive();
        }
    }

    /** Kills QEMU at once (SIGKILL), e.g. to simulate a crash; {@link #close()} is still needed. */
    public void kill() {
        process.descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
        awaitExit(Duration.ofSeconds(10));
    }

    /**
     * QEMU's stdout and stderr so far (the last 64 KiB of each), with the command line, for
     * diagnostics. Still available after {@link #close()}.
     */
    public String log() {
        String kept = finalLog;
        if (kept != null) {
            return kept;
        }
        StringBuilder sb = new StringBuilder();
        sb.append("--- ").append(name).append(" (QEMU ").append(binary.version()).append(", pid ")
                .append(process.pid());
        exitCode().ifPresent(c -> sb.append(", exit ").append(c));
        sb.append(") ---\n$ ").append(String.join(" ", commandLine)).append('\n');
        appendTail(sb, "stderr", workDir.resolve("stderr.log"));
        appendTail(sb, "stdout", workDir.resolve("stdout.log"));
        return sb.toString();
    }

    private static void appendTail(StringBuilder sb, String label, Path file) {
        try {
            if (!Files.exists(file)) {
                return;
            }
            byte[] bytes = Files.readAllBytes(file);
            int from = Math.max(0, bytes.length - 64 * 1024);
            sb.append("[").append(label).append(from > 0 ? ", tail" : "").append("]\n")
                    .append(new String(bytes, from, bytes.length - from, StandardCharsets.UTF_8));
            if (bytes.length > 0 && bytes[bytes.length - 1] != '\n') {
                sb.append('\n');
            }
        } catch (IOException e) {
            sb.append("[").append(label).append(": ").append(e).append("]\n");
        }
    }

    // ------------------------------------------------------------------ shutdown

    /**
     * Stops QEMU: QMP {@code quit}, then SIGTERM after the quit grace, then SIGKILL after the
     * term grace. Closes the connections and removes the work directory. Idempotent; never throws.
     */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            Qmp q = qmp;
            if (process.isAlive() && q != null && q.isConnected()) {
                try {
                    q.setCommandTimeout(quitGrace);
                    q.quit();
                } catch (RuntimeException ignored) {
                    // QEMU may be wedged; the signals below take care of it
                }
                awaitExit(quitGrace);
            }
            if (process.isAlive()) {
                process.descendants().forEach(ProcessHandle::destroy);
                process.destroy();
                awaitExit(termGrace);
            }
            if (process.isAlive()) {
                kill();
            }
            // a wrapper that did not exec could leave children behind
            process.descendants().forEach(ProcessHandle::destroyForcibly);
        } finally {
            if (qtest != null) {
                qtest.close();
            }
            if (qmp != null) {
                qmp.close();
            }
            if (!process.isAlive()) {
                LIVE.remove(process);
            }
            finalLog = log();
            if (ownsWorkDir && !Boolean.getBoolean(KEEP_PROPERTY)) {
                deleteTree(workDir);
            }
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort
                }
            });
        } catch (IOException | UncheckedIOException ignored) {
            // best effort
        }
    }

    @Override
    public String toString() {
        return "Qemu[" + name + ", " + binary.version() + ", pid " + process.pid() + "]";
    }
}
