package dev.multifdcolo.bench.loopback;

import dev.multifdcolo.secondary.ChannelVerticle;
import io.netty.buffer.ByteBuf;
import io.netty.util.ReferenceCountUtil;
import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;

import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;

/**
 * The raw sink: the cheapest possible receiver on the same Vert.x receive path as the real one.
 * Every connection reads raw Netty {@link ByteBuf}s through {@link NetSocketInternal#messageHandler}
 * (as {@code secondary.net.Connection} does), counts their bytes and releases them. It never
 * writes, parses or pauses.
 *
 * <p>A session is {@code expectedConnections} connections (main + multifd channels); it ends when
 * all of them have been closed by the peer. Its end time is the time of the last read (the moment
 * the sink had consumed the stream's last byte), which is what the real receiver's completion
 * means too.
 */
final class RawSink {

    /** What one session received. */
    record Session(long bytes, long firstReadNanos, long lastReadNanos, int connections, Map<String, Integer> loops) {
    }

    private final int expectedConnections;
    private final Consumer<Session> onDone;
    private long bytes;
    private long firstRead = Long.MAX_VALUE;
    private long lastRead;
    private int closed;
    private final Map<String, Integer> loops = new TreeMap<>();

    RawSink(int expectedConnections, Consumer<Session> onDone) {
        this.expectedConnections = expectedConnections;
        this.onDone = onDone;
    }

    /** Wires one accepted connection (called on its event loop). */
    void accept(NetSocketInternal so) {
        String loop = Thread.currentThread().getName();
        synchronized (this) {
            loops.merge(loop, 1, Integer::sum);
        }
        Counter c = new Counter();
        so.messageHandler(msg -> {
            if (msg instanceof ByteBuf b) {
                c.bytes += b.readableBytes();
                long now = System.nanoTime();
                if (c.first == 0) {
                    c.first = now;
                }
                c.last = now;
            }
            ReferenceCountUtil.release(msg);
        });
        so.exceptionHandler(e -> { });
        so.closeHandler(v -> closed(c));
    }

    private void closed(Counter c) {
        Session done = null;
        synchronized (this) {
            bytes += c.bytes;
            if (c.first != 0) {
                firstRead = Math.min(firstRead, c.first);
            }
            lastRead = Math.max(lastRead, c.last);
            if (++closed == expectedConnections) {
                done = new Session(bytes, firstRead, lastRead, closed, new TreeMap<>(loops));
                bytes = 0;
                firstRead = Long.MAX_VALUE;
                lastRead = 0;
                closed = 0;
                loops.clear();
            }
        }
        if (done != null) {
            onDone.accept(done);
        }
    }

    /** Per-connection counters: touched only by the connection's event loop. */
    private static final class Counter {
        long bytes;
        long first;
        long last;
    }

    /**
     * One listening instance, with exactly the socket options of {@link ChannelVerticle}
     * (1 MiB receive buffer, TCP_NODELAY, quick ack, reuse address, backlog 256).
     */
    static final class SinkVerticle extends VerticleBase {
        private final RawSink sink;
        private final String host;
        private final int port;
        private NetServer server;

        SinkVerticle(RawSink sink, String host, int port) {
            this.sink = sink;
            this.host = host;
            this.port = port;
        }

        @Override
        public Future<?> start() {
            NetServerOptions options = new NetServerOptions()
                    .setHost(host)
                    .setPort(port)
                    .setTcpNoDelay(true)
                    .setTcpQuickAck(true)
                    .setReceiveBufferSize(ChannelVerticle.SOCKET_BUFFER)
                    .setReuseAddress(true)
                    .setAcceptBacklog(256);
            server = vertx.createNetServer(options).connectHandler(so -> sink.accept((NetSocketInternal) so));
            return server.listen();
        }

        int actualPort() {
            return server.actualPort();
        }

        @Override
        public Future<?> stop() {
            return server == null ? Future.succeededFuture() : server.close();
        }
    }
}
