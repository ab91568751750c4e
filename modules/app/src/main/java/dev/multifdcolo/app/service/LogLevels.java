package dev.multifdcolo.app.service;

import io.vertx.core.json.JsonObject;

import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The {@code log-levels} key: logger name → level, applied live on every configuration change.
 * Levels are java.util.logging's (SEVERE, WARNING, INFO, CONFIG, FINE, FINER, FINEST, ALL, OFF) or
 * the usual aliases (ERROR, WARN, DEBUG, TRACE). A logger dropped from the map goes back to
 * inheriting its parent's level.
 */
public final class LogLevels {
    /** Loggers we set (java.util.logging only keeps weak references to them). */
    private final Map<String, Logger> set = new HashMap<>();

    /** Parses and validates; throws IllegalArgumentException naming the bad entry. */
    public static Map<String, Level> parse(JsonObject j) {
        Map<String, Level> m = new LinkedHashMap<>();
        if (j == null) {
            return m;
        }
        for (String name : j.fieldNames()) {
            Object v = j.getValue(name);
            if (!(v instanceof String s)) {
                throw new IllegalArgumentException("log-levels." + name + " must be a level name, got " + v);
            }
            m.put(name, level(name, s));
        }
        return m;
    }

    private static Level level(String logger, String s) {
        String u = s.trim().toUpperCase(Locale.ROOT);
        return switch (u) {
            case "ERROR" -> Level.SEVERE;
            case "WARN" -> Level.WARNING;
            case "DEBUG" -> Level.FINE;
            case "TRACE" -> Level.FINEST;
            default -> {
                try {
                    yield Level.parse(u);
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("log-levels." + logger + ": unknown level '" + s + "'");
                }
            }
        };
    }

    /** Applies {@code levels}; loggers set before and absent now inherit again. */
    public synchronized void apply(Map<String, Level> levels) {
        for (var it = set.entrySet().iterator(); it.hasNext(); ) {
            var e = it.next();
            if (!levels.containsKey(e.getKey())) {
                e.getValue().setLevel(null);
                it.remove();
            }
        }
        levels.forEach((name, level) -> {
            Logger l = set.computeIfAbsent(name, Logger::getLogger);
            if (l.getLevel() != level) {
                l.setLevel(level);
                Logger.getLogger(LogLevels.class.getName()).info("log level of " + (name.isEmpty() ? "the root logger"
                        : name) + " set to " + level);
            }
        });
        // the console handler filters too: let through what a logger now asks for
        Level lowest = levels.values().stream().min(java.util.Comparator.comparingInt(Level::intValue)).orElse(null);
        if (lowest != null) {
            for (java.util.logging.Handler h : Logger.getLogger("").getHandlers()) {
                if (h.getLevel().intValue() > lowest.intValue()) {
                    h.setLevel(lowest);
                }
            }
        }
    }
}
