package dev.multifdcolo.secondary;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** Collects Vert.x blocked-thread warnings so tests can fail on them. */
final class BlockedThreadWatch {
    static final List<String> WARNINGS = new CopyOnWriteArrayList<>();
    private static boolean installed;

    static synchronized void install() {
        WARNINGS.clear();        // each test class judges its own event loops
        if (installed) {
            return;
        }
        installed = true;
        Logger.getLogger("io.vertx.core.impl.BlockedThreadChecker").addHandler(new Handler() {
            @Override
            public void publish(LogRecord r) {
                WARNINGS.add(String.valueOf(r.getMessage()));
            }

            @Override
            public void flush() {
            }

            @Override
            public void close() {
            }
        });
    }

    static void assertNone() {
        assertTrue(WARNINGS.isEmpty(), "event loop blocked: " + WARNINGS);
    }
}
