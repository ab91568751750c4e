package dev.multifdcolo.secondary.fuzz;

import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import net.jqwik.api.lifecycle.AroundPropertyHook;
import net.jqwik.api.lifecycle.PropertyExecutionResult;
import net.jqwik.api.lifecycle.PropertyExecutor;
import net.jqwik.api.lifecycle.PropertyLifecycleContext;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * The fuzzing frame: how many inputs a target gets ({@code -Dfuzz.tries}, total over all targets,
 * split by each target's share), what every input must satisfy, per-target statistics, the report
 * ({@code target/fuzz-report.md}) and a watchdog for hangs.
 *
 * <p>Per input: the only Throwable allowed out of a decoder is a {@link ProtocolException} with a
 * {@link Rule}; its message must read {@code rule-id: detail}; heap allocated by the run (this
 * thread, {@code ThreadMXBean.getThreadAllocatedBytes}) stays under a bound derived from the
 * configured limits; the run takes less than {@link #MAX_INPUT_MILLIS}.
 */
public final class Fuzz {
    private Fuzz() {}

    /** Total inputs over all targets; the default is the bounded CI run. */
    public static final long TOTAL = Long.getLong("fuzz.tries", 1_000_000L);
    /** One input slower than this fails the property (a hang in disguise). */
    public static final long MAX_INPUT_MILLIS = Long.getLong("fuzz.maxInputMillis", 5_000L);
    /**
     * The first inputs of a target are not held to the allocation bound: they load classes, fill
     * lazy caches and run cold code (counted, and their largest allocation is reported).
     */
    static final int WARM_UP = 200;
    /**
     * {@code -Dfuzz.replay=N}: every property runs once, on input N (the number a failure names,
     * e.g. {@code -Dtest='DecoderFuzzTest#colo' -Dfuzz.replay=3818698705}).
     */
    static final Long REPLAY = Long.getLong("fuzz.replay");

    /** The input a try runs: jqwik's value, or the one to replay. */
    public static long input(long generated) {
        return REPLAY != null ? REPLAY : generated;
    }

    /** A single input running this long is a hang: the watchdog reports it and halts the JVM. */
    static final long HANG_MILLIS = Long.getLong("fuzz.hangMillis", 120_000L);

    /** Sets the property's tries from {@link #TOTAL} and its share; writes the target's report row. */
    public static final class Tries implements AroundPropertyHook {
        @Override
        public PropertyExecutionResult aroundProperty(PropertyLifecycleContext context, PropertyExecutor property) {
            FuzzTarget t = context.findAnnotation(FuzzTarget.class).orElseThrow(
                    () -> new IllegalStateException("a fuzz property needs @FuzzTarget"));
            int tries = REPLAY != null ? 1 : (int) Math.max(1, Math.min(Integer.MAX_VALUE, Math.round(TOTAL * t.share())));
            context.attributes().setTries(tries);
            Stats s = Stats.begin(t.name());
            long t0 = System.nanoTime();
            PropertyExecutionResult r = property.execute();
            s.wallNanos = System.nanoTime() - t0;
            s.passed = r.status() == PropertyExecutionResult.Status.SUCCESSFUL;
            Report.write(s);
            return r;
        }
    }

    // ------------------------------------------------------------------ per-target statistics

    /** What one target saw. */
    public static final class Stats {
        final String target;
        long inputs;
        long accepted;
        long incomplete;
        final EnumMap<Rule, Long> rules = new EnumMap<>(Rule.class);
        final Map<String, Long> otherRejections = new TreeMap<>();
        long maxAlloc;
        long warmUpMaxAlloc;
        long maxAllocBound;
        double maxAllocRatio;
        long maxNanos;
        long wallNanos;
        boolean passed;

        Stats(String target) {
            this.target = target;
        }

        static volatile Stats current;

        static Stats begin(String target) {
            Stats s = new Stats(target);
            current = s;
            return s;
        }
    }

    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private static volatile long runningSince;
    private static volatile String runningInput;

    static {
        Thread w = new Thread(Fuzz::watch, "fuzz-watchdog");
        w.setDaemon(true);
        w.start();
    }

    private static void watch() {
        while (true) {
            try {
                TimeUnit.SECONDS.sleep(1);
            } catch (InterruptedException e) {
                return;
            }
            long since = runningSince;
            if (since != 0 && (System.nanoTime() - since) / 1_000_000 > HANG_MILLIS) {
                String msg = "fuzz: input " + runningInput + " has run for more than " + HANG_MILLIS + " ms: a hang";
                System.err.println(msg);
                Thread.getAllStackTraces().forEach((t, st) -> {
                    if (!t.isDaemon() || t.getName().startsWith("main")) {
                        System.err.println(t);
                        for (StackTraceElement e : st) {
                            System.err.println("    at " + e);
                        }
                    }
                });
                Report.hang(msg);
                Runtime.getRuntime().halt(97);
            }
        }
    }

    /** How an input ended, as the target classifies it. */
    public enum End { ACCEPTED, INCOMPLETE, REJECTED }

    /**
     * Runs one input under the per-input assertions and counts it.
     *
     * @param id    reproduction info (target, seed, mutation seed) for failure messages
     * @param bound allocation bound in bytes for this input
     * @param body  the run; returns ACCEPTED or INCOMPLETE, or throws ProtocolException
     */
    /** Call before preparing an input's reads. */
    public static void next() {
        Reads.reset();
    }

    public static void input(String id, long bound, java.util.function.Supplier<End> body) {
        Stats s = Stats.current;
        long tid = Thread.currentThread().threadId();
        runningInput = id;
        long a0 = THREADS.getThreadAllocatedBytes(tid);
        long t0 = System.nanoTime();
        runningSince = t0;
        End end;
        Rule rule = null;
        try {
            end = body.get();
        } catch (ProtocolException e) {
            end = End.REJECTED;
            rule = checkedRule(id, e);
        } catch (AssertionError e) {
            runningSince = 0;
            throw new AssertionError(id + ": " + e.getMessage(), e);
        } catch (Throwable t) {
            runningSince = 0;
            throw new AssertionError(id + ": not a named rejection: " + t, t);
        }
        long nanos = System.nanoTime() - t0;
        runningSince = 0;
        long alloc = THREADS.getThreadAllocatedBytes(tid) - a0;
        count(s, end, rule, alloc, bound, nanos);
        if (alloc > bound && (s == null || s.inputs > WARM_UP)) {
            throw new AssertionError(id + ": allocated " + alloc + " bytes, bound " + bound + " (" + end
                    + (rule == null ? "" : " " + rule.id()) + ")");
        }
        if (nanos / 1_000_000 > MAX_INPUT_MILLIS) {
            throw new AssertionError(id + ": took " + nanos / 1_000_000 + " ms (bound " + MAX_INPUT_MILLIS + " ms)");
        }
    }

    /** A rejection must carry a rule and read {@code rule-id: detail}. */
    static Rule checkedRule(String id, ProtocolException e) {
        Rule r = e.rule();
        if (r == null || e.getMessage() == null || !e.getMessage().startsWith(r.id() + ": ")
                || e.getMessage().length() <= r.id().length() + 2) {
            throw new AssertionError(id + ": rejection without a rule or detail: " + e.getMessage(), e);
        }
        return r;
    }

    /** Counts an outcome the target classified itself (e.g. a config rejection that is not a Rule). */
    public static void countOther(String what) {
        Stats.current.otherRejections.merge(what, 1L, Long::sum);
    }

    private static void count(Stats s, End end, Rule rule, long alloc, long bound, long nanos) {
        if (s == null) {
            return;
        }
        s.inputs++;
        switch (end) {
            case ACCEPTED -> s.accepted++;
            case INCOMPLETE -> s.incomplete++;
            case REJECTED -> {
                if (rule != null) {
                    s.rules.merge(rule, 1L, Long::sum);
                }
            }
        }
        if (s.inputs <= WARM_UP) {
            s.warmUpMaxAlloc = Math.max(s.warmUpMaxAlloc, alloc);
            s.maxNanos = Math.max(s.maxNanos, nanos);
            return;
        }
        if (alloc > s.maxAlloc) {
            s.maxAlloc = alloc;
        }
        double ratio = (double) alloc / bound;
        if (ratio > s.maxAllocRatio) {
            s.maxAllocRatio = ratio;
            s.maxAllocBound = bound;
        }
        s.maxNanos = Math.max(s.maxNanos, nanos);
    }

    // ------------------------------------------------------------------ the report

    /** {@code target/fuzz-report.md}: one row per target, rewritten as targets finish. */
    static final class Report {
        private static final Map<String, Stats> DONE = new LinkedHashMap<>();

        static synchronized void write(Stats s) {
            DONE.put(s.target, s);
            StringBuilder sb = new StringBuilder();
            sb.append("# Fuzz run\n\n");
            sb.append("`-Dfuzz.tries=").append(TOTAL).append("` (total over all targets); ")
                    .append(Runtime.getRuntime().availableProcessors()).append(" cores.\n\n");
            sb.append("| target | inputs | accepted | incomplete | rejected | max heap alloc per input | max alloc / bound "
                    + "| warm-up max alloc | max time per input | wall time | result |\n"
                    + "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
            EnumMap<Rule, Long> all = new EnumMap<>(Rule.class);
            long inputs = 0;
            for (Stats t : DONE.values()) {
                long rejected = t.rules.values().stream().mapToLong(Long::longValue).sum()
                        + t.otherRejections.values().stream().mapToLong(Long::longValue).sum();
                inputs += t.inputs;
                t.rules.forEach((r, n) -> all.merge(r, n, Long::sum));
                sb.append("| ").append(t.target).append(" | ").append(t.inputs).append(" | ").append(t.accepted)
                        .append(" | ").append(t.incomplete).append(" | ").append(rejected).append(" | ")
                        .append(kib(t.maxAlloc)).append(" | ").append(String.format("%.0f %%", 100 * t.maxAllocRatio))
                        .append(" of ").append(kib(t.maxAllocBound)).append(" | ")
                        .append(kib(t.warmUpMaxAlloc)).append(" | ")
                        .append(String.format("%.1f ms", t.maxNanos / 1e6)).append(" | ")
                        .append(String.format("%.1f s", t.wallNanos / 1e9)).append(" | ")
                        .append(t.passed ? "pass" : "**FAIL**").append(" |\n");
            }
            sb.append("\nInputs in total: ").append(inputs).append(". Rules hit: ").append(all.size()).append(" of ")
                    .append(Rule.values().length).append(".\n\n## Rejections by rule\n\n");
            for (Stats t : DONE.values()) {
                sb.append("- **").append(t.target).append("**: ");
                StringBuilder r = new StringBuilder();
                t.rules.forEach((rule, n) -> r.append(r.isEmpty() ? "" : ", ").append(rule.id()).append(' ').append(n));
                t.otherRejections.forEach((k, n) -> r.append(r.isEmpty() ? "" : ", ").append(k).append(' ').append(n));
                sb.append(r.isEmpty() ? "none" : r).append('\n');
            }
            sb.append("\nRules never hit: ");
            StringBuilder never = new StringBuilder();
            for (Rule r : Rule.values()) {
                if (!all.containsKey(r)) {
                    never.append(never.isEmpty() ? "" : ", ").append(r.id());
                }
            }
            sb.append(never.isEmpty() ? "none" : never).append(".\n");
            try {
                Path p = Path.of("target", "fuzz-report.md");
                Files.createDirectories(p.getParent());
                Files.writeString(p, sb.toString());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            System.out.println(sb);
        }

        static void hang(String msg) {
            try {
                Path p = Path.of("target", "fuzz-hang.txt");
                Files.createDirectories(p.getParent());
                Files.writeString(p, msg + "\n");
            } catch (IOException ignored) {
                // best effort: the JVM halts next
            }
        }

        private static String kib(long b) {
            return b < 10 << 20 ? String.format("%.0f KiB", b / 1024.0) : String.format("%.1f MiB", b / 1048576.0);
        }
    }
}
