package dev.multifdcolo.bench.loopback;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/** A {@link LoopbackChild} JVM seen from the benchmark: start, talk over stdin/stdout, stop. */
final class Child implements AutoCloseable {
    private final String name;
    private final Process process;
    private final Writer stdin;
    private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();
    private final Path log;
    int port;
    String transport;
    int loops;

    private Child(String name, Process process, Path log) {
        this.name = name;
        this.process = process;
        this.log = log;
        this.stdin = new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
        Thread.ofPlatform().daemon().name("child-" + name).start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                String l;
                while ((l = r.readLine()) != null) {
                    if (l.startsWith("@@ ")) {
                        lines.add(l.substring(3));
                    }
                }
            } catch (IOException ignored) {
                // process gone
            }
            lines.add("eof");
        });
    }

    /**
     * Starts {@code java JVM_ARGS -cp CLASSPATH LoopbackChild ARGS}, its stderr to {@code log}, and
     * waits for its ready line.
     */
    static Child start(String name, List<String> jvmArgs, Map<String, String> env, List<String> args, Path log,
                       Duration timeout)
            throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(jvmArgs);
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(LoopbackChild.class.getName());
        cmd.addAll(args);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.appendTo(log.toFile()));
        pb.environment().putAll(env);
        Process p = pb.start();
        Child c = new Child(name, p, log);
        try {
            Map<String, String> ready = fields(c.await("ready ", timeout));
            c.port = Integer.parseInt(ready.get("port"));
            c.transport = ready.get("transport");
            c.loops = Integer.parseInt(ready.get("loops"));
        } catch (IOException | RuntimeException e) {
            p.destroyForcibly();
            throw e;
        }
        return c;
    }

    long pid() {
        return process.pid();
    }

    String name() {
        return name;
    }

    void send(String command) throws IOException {
        stdin.write(command + "\n");
        stdin.flush();
    }

    /** The next protocol line starting with {@code prefix} (other lines before it are dropped). */
    String await(String prefix, Duration timeout) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            long left = deadline - System.nanoTime();
            String l = left <= 0 ? null : lines.poll(left, TimeUnit.NANOSECONDS);
            if (l == null) {
                throw new IOException("child " + name + ": no '" + prefix + "' within " + timeout.toSeconds() + " s; see " + log);
            }
            if (l.equals("eof")) {
                throw new IOException("child " + name + " exited (code " + waitExit() + "); see " + log);
            }
            if (l.startsWith("failed ")) {
                throw new IOException("child " + name + ": " + l + "; see " + log);
            }
            if (l.startsWith(prefix)) {
                return l;
            }
        }
    }

    private String waitExit() {
        try {
            return process.waitFor(2, TimeUnit.SECONDS) ? Integer.toString(process.exitValue()) : "?";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "?";
        }
    }

    /** "key=value key=value" after the first word. */
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

    /** "name=nanos;name=nanos" of a threads line. */
    static Map<String, Long> threadCpu(String line) {
        Map<String, Long> m = new HashMap<>();
        String body = line.startsWith("threads") ? line.substring("threads".length()).trim() : line;
        if (body.isEmpty()) {
            return m;
        }
        for (String part : body.split(";")) {
            int eq = part.lastIndexOf('=');
            if (eq > 0) {
                m.put(part.substring(0, eq), Long.parseLong(part.substring(eq + 1)));
            }
        }
        return m;
    }

    @Override
    public void close() {
        try {
            send("quit");
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
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
