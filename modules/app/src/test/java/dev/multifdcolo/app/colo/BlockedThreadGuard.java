package dev.multifdcolo.app.colo;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Records Vert.x's blocked-thread warnings (the checker logs them on
 * {@code io.vertx.core.impl.BlockedThreadChecker}) from {@link #start()} to {@link #stop()}, so a
 * test can fail when any event loop or worker was blocked longer than Vert.x allows.
 * {@link BlockedThreadGuardTest} checks that a deliberately blocked loop is caught.
 */
final class BlockedThreadGuard implements AutoCloseable {
    static final String LOGGER = "io.vertx.core.impl.BlockedThreadChecker";

    static {
        // Vert.x logs through JUL unless another backend is configured; make that explicit so the
        // handler below sees the warnings whatever else is on the test classpath.
        if (System.getProperty("vertx.logger-delegate-factory-class-name") == null) {
            System.setProperty("vertx.logger-delegate-factory-class-name", "io.vertx.core.logging.JULLogDelegateFactory");
        }
    }

    private final List<String> warnings = new CopyOnWriteArrayList<>();
    /** Strong reference: JUL keeps loggers weakly, and a collected logger loses its handler. */
    private final Logger logger = Logger.getLogger(LOGGER);
    private final Handler handler = new Handler() {
        @Override
        public void publish(LogRecord r) {
            if (r.getLevel().intValue() >= Level.WARNING.intValue()) {
                warnings.add(r.getMessage());
            }
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };

    static BlockedThreadGuard start() {
        BlockedThreadGuard g = new BlockedThreadGuard();
        g.logger.addHandler(g.handler);
        if (g.logger.getLevel() == null || g.logger.getLevel().intValue() > Level.WARNING.intValue()) {
            g.logger.setLevel(Level.WARNING);
        }
        return g;
    }

    List<String> warnings() {
        return List.copyOf(warnings);
    }

    /** Stops recording and fails if anything was blocked. */
    void assertNone() {
        stop();
        assertTrue(warnings.isEmpty(), "Vert.x threads were blocked: " + warnings);
    }

    void stop() {
        logger.removeHandler(handler);
    }

    @Override
    public void close() {
        stop();
    }
}
