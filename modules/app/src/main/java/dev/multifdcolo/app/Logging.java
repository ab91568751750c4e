package dev.multifdcolo.app;

import java.util.logging.ConsoleHandler;
import java.util.logging.Formatter;
import java.util.logging.Level;
import java.util.logging.LogManager;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/** One line per record on stderr: time, level, logger, message. */
public final class Logging {
    private Logging() {}

    public static void configure() {
        if (System.getProperty("java.util.logging.config.file") != null) {
            return;
        }
        LogManager.getLogManager().reset();
        Logger root = Logger.getLogger("");
        ConsoleHandler h = new ConsoleHandler();
        h.setLevel(Level.ALL);
        h.setFormatter(new Formatter() {
            @Override
            public String format(LogRecord r) {
                String name = r.getLoggerName() == null ? "" : r.getLoggerName();
                name = name.substring(name.lastIndexOf('.') + 1);
                String t = r.getThrown() == null ? "" : " (" + r.getThrown() + ")";
                return String.format("%1$tT.%1$tL %2$-7s %3$s: %4$s%5$s%n", r.getMillis(), r.getLevel(), name,
                        formatMessage(r), t);
            }
        });
        root.addHandler(h);
        root.setLevel(Level.INFO);
        Logger.getLogger("io.netty").setLevel(Level.WARNING);
    }
}
