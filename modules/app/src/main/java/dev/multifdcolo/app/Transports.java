package dev.multifdcolo.app;

import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.transport.Transport;

import java.util.Locale;
import java.util.logging.Logger;

/**
 * Picks the Vert.x transport: {@code auto} tries io_uring, then epoll, then NIO, and says which
 * one it took and why the better ones were not available. {@code preferNativeTransport} alone
 * would only ever pick epoll, so io_uring is selected explicitly.
 */
public final class Transports {
    private static final Logger LOG = Logger.getLogger(Transports.class.getName());

    static {
        // Netty 4.2.9's io_uring can lose the read that reports a peer's reset while multishot
        // POLL_ADD is on (netty/netty#17049, fixed by #17090): a dead COLO primary would then only
        // be noticed by the heartbeat. Off unless the operator says otherwise; set before Netty's
        // io_uring classes initialize.
        if (System.getProperty("io.netty.iouring.pollAddMultishotEnabled") == null) {
            System.setProperty("io.netty.iouring.pollAddMultishotEnabled", "false");
        }
    }

    private Transports() {}

    public static Transport choose(String name) {
        String n = name == null ? "auto" : name.toLowerCase(Locale.ROOT).replace('-', '_');
        return switch (n) {
            case "io_uring", "iouring" -> require(Transport.IO_URING);
            case "epoll" -> require(Transport.EPOLL);
            case "nio" -> Transport.NIO;
            case "auto" -> {
                StringBuilder why = new StringBuilder();
                for (Transport t : new Transport[]{Transport.IO_URING, Transport.EPOLL}) {
                    if (t.available()) {
                        if (!why.isEmpty()) {
                            LOG.info("transport " + t.name() + " (" + why + ")");
                        }
                        yield t;
                    }
                    why.append(t.name()).append(" unavailable: ").append(cause(t)).append("; ");
                }
                LOG.info("transport nio (" + why + ")");
                yield Transport.NIO;
            }
            default -> throw new IllegalArgumentException("unknown transport '" + name + "' (auto, io_uring, epoll, nio)");
        };
    }

    private static Transport require(Transport t) {
        if (!t.available()) {
            throw new IllegalStateException("transport " + t.name() + " is not available: " + cause(t));
        }
        return t;
    }

    private static String cause(Transport t) {
        Throwable c = t.unavailabilityCause();
        return c == null ? "unknown" : c.getClass().getSimpleName() + ": " + c.getMessage();
    }

    public static Vertx vertx(String transport, VertxOptions options) {
        Transport t = choose(transport);
        Vertx v = Vertx.builder().with(options).withTransport(t).build();
        LOG.info("Vert.x transport: " + t.name());
        return v;
    }
}
