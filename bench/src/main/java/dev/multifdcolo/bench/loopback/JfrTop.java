package dev.multifdcolo.bench.loopback;

import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordedFrame;
import jdk.jfr.consumer.RecordedMethod;
import jdk.jfr.consumer.RecordedStackTrace;
import jdk.jfr.consumer.RecordedThread;
import jdk.jfr.consumer.RecordingFile;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Where the time goes in a JFR recording of the loopback benchmark: execution samples (threads
 * running Java code) and native-method samples (threads inside JNI/FFM calls: zlib, zstd, the
 * transport's native wait), by thread, by self method, by first project frame and by short stack,
 * plus GC pauses.
 *
 * <pre>
 *   java -cp target/multifd-colo-bench.jar dev.multifdcolo.bench.loopback.JfrTop FILE.jfr [--thread REGEX] [--top N]
 * </pre>
 */
public final class JfrTop {
    private JfrTop() {}

    public static void main(String[] args) throws IOException {
        if (args.length < 1) {
            System.err.println("usage: JfrTop FILE.jfr [--thread REGEX] [--top N] [--depth N]");
            System.exit(2);
        }
        Path file = Path.of(args[0]);
        Pattern thread = Pattern.compile(".*");
        int top = 15;
        int depth = 4;
        for (int i = 1; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--thread" -> thread = Pattern.compile(args[i + 1]);
                case "--top" -> top = Integer.parseInt(args[i + 1]);
                case "--depth" -> depth = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        Map<String, Map<String, Integer>> tables = new LinkedHashMap<>();
        String[] names = {"java samples by thread", "native samples by thread", "java self method",
            "java first dev.multifdcolo frame", "java stack", "native top frame", "native stack"};
        for (String n : names) {
            tables.put(n, new HashMap<>());
        }
        int java = 0;
        int nat = 0;
        int gcs = 0;
        Duration gcPause = Duration.ZERO;
        Duration longestPause = Duration.ZERO;
        for (RecordedEvent e : RecordingFile.readAllEvents(file)) {
            String type = e.getEventType().getName();
            switch (type) {
                case "jdk.ExecutionSample", "jdk.NativeMethodSample" -> {
                    RecordedThread t = e.getThread("sampledThread");
                    String tn = t == null ? "?" : t.getJavaName() != null ? t.getJavaName() : t.getOSName();
                    if (!thread.matcher(tn).matches()) {
                        continue;
                    }
                    RecordedStackTrace st = e.getStackTrace();
                    List<RecordedFrame> frames = st == null ? List.of() : st.getFrames();
                    boolean isJava = type.equals("jdk.ExecutionSample");
                    if (isJava) {
                        java++;
                        tables.get("java samples by thread").merge(tn, 1, Integer::sum);
                        tables.get("java self method").merge(frames.isEmpty() ? "?" : frame(frames.get(0)), 1, Integer::sum);
                        tables.get("java first dev.multifdcolo frame").merge(firstProject(frames), 1, Integer::sum);
                        tables.get("java stack").merge(stack(frames, depth), 1, Integer::sum);
                    } else {
                        nat++;
                        tables.get("native samples by thread").merge(tn, 1, Integer::sum);
                        tables.get("native top frame").merge(frames.isEmpty() ? "?" : frame(frames.get(0)), 1, Integer::sum);
                        tables.get("native stack").merge(stack(frames, depth), 1, Integer::sum);
                    }
                }
                case "jdk.GarbageCollection" -> {
                    gcs++;
                    Duration d = e.getDuration("sumOfPauses");
                    gcPause = gcPause.plus(d);
                    if (d.compareTo(longestPause) > 0) {
                        longestPause = d;
                    }
                }
                default -> { }
            }
        }
        System.out.printf("%s: %d Java execution samples, %d native-method samples; %d GCs, %.1f ms paused (longest %.1f ms)%n",
                file, java, nat, gcs, gcPause.toNanos() / 1e6, longestPause.toNanos() / 1e6);
        for (Map.Entry<String, Map<String, Integer>> t : tables.entrySet()) {
            int total = t.getKey().startsWith("java") ? java : nat;
            if (total == 0) {
                continue;
            }
            System.out.printf("%n== %s (of %d)%n", t.getKey(), total);
            t.getValue().entrySet().stream()
                    .sorted(Map.Entry.<String, Integer>comparingByValue().reversed())
                    .limit(top)
                    .forEach(x -> System.out.printf("%6d %5.1f%%  %s%n", x.getValue(), 100.0 * x.getValue() / total, x.getKey()));
        }
    }

    private static String frame(RecordedFrame f) {
        RecordedMethod m = f.getMethod();
        if (m == null) {
            return "?";
        }
        String cls = m.getType().getName();
        cls = cls.substring(cls.lastIndexOf('.') + 1);
        return cls + "." + m.getName() + (f.isJavaFrame() ? "" : " [native]");
    }

    private static String firstProject(List<RecordedFrame> frames) {
        for (RecordedFrame f : frames) {
            RecordedMethod m = f.getMethod();
            if (m != null && m.getType().getName().startsWith("dev.multifdcolo.")) {
                return frame(f);
            }
        }
        return "(no project frame)";
    }

    private static String stack(List<RecordedFrame> frames, int depth) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < Math.min(depth, frames.size()); i++) {
            if (i > 0) {
                sb.append(" <- ");
            }
            sb.append(frame(frames.get(i)));
        }
        return sb.toString();
    }
}
