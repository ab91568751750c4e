package dev.multifdcolo.app.colo;

import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.Test;

import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertFalse;

/** The guard the COLO tests rely on really sees a blocked event loop. */
class BlockedThreadGuardTest {

    @Test
    void catchesABlockedEventLoop() throws Exception {
        try (BlockedThreadGuard g = BlockedThreadGuard.start()) {
            Vertx v = Vertx.vertx(new VertxOptions().setBlockedThreadCheckInterval(20)
                    .setBlockedThreadCheckIntervalUnit(TimeUnit.MILLISECONDS)
                    .setMaxEventLoopExecuteTime(50).setMaxEventLoopExecuteTimeUnit(TimeUnit.MILLISECONDS));
            try {
                v.runOnContext(x -> {
                    try {
                        Thread.sleep(300);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                });
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while (g.warnings().isEmpty() && System.nanoTime() < deadline) {
                    Thread.sleep(20);
                }
            } finally {
                v.close().await();
            }
            assertFalse(g.warnings().isEmpty(), "the blocked-thread warning was not seen");
        }
    }
}
