package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.net.Connection;
import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;

/**
 * Accepts the channels of one replica port. Deployed with N instances, Vert.x shares the port
 * among them and spreads connections over their event loops, so a migration's main channel and
 * its multifd channels are decoded on different cores.
 */
public final class ChannelVerticle extends VerticleBase {
    /** Socket buffers large enough for several channels to match one channel's throughput. */
    public static final int SOCKET_BUFFER = 1 << 20;
    private static final java.util.logging.Logger LIMIT_LOG = java.util.logging.Logger.getLogger(ChannelVerticle.class.getName());
    /**
     * System property overriding {@link #SOCKET_BUFFER} (bytes); 0 leaves SO_RCVBUF unset, so the
     * kernel autotunes the receive window (up to {@code net.ipv4.tcp_rmem}'s max, as QEMU's own
     * secondary does). A benchmark hook: {@code -Dmultifdcolo.receiveBuffer=0}.
     */
    public static final String RECEIVE_BUFFER_PROPERTY = "multifdcolo.receiveBuffer";

    private final Replica replica;
    private final int port;
    private NetServer server;

    public ChannelVerticle(Replica replica) {
        this(replica, replica.config().port());
    }

    /** Listens on {@code port} instead of the configured one (the port a first instance bound for port 0). */
    public ChannelVerticle(Replica replica, int port) {
        this.replica = replica;
        this.port = port;
    }

    @Override
    public Future<?> start() {
        ReplicaConfig cfg = replica.config();
        NetServerOptions options = new NetServerOptions()
                .setHost(cfg.host())
                .setPort(port)
                .setTcpNoDelay(true)            // we write return-path and COLO replies on the main channel
                .setTcpQuickAck(true)
                .setReuseAddress(true)
                .setAcceptBacklog(256);
        int rcvbuf = Integer.getInteger(RECEIVE_BUFFER_PROPERTY, SOCKET_BUFFER);
        if (rcvbuf > 0) {
            options.setReceiveBufferSize(rcvbuf);
        }
        io.netty.handler.ssl.SslContext ssl;
        try {
            ssl = replica.sslContext(vertx);
        } catch (IllegalArgumentException e) {
            return Future.failedFuture(e);
        }
        // TLS is done by our own SslHandler at the head of the pipeline rather than by Vert.x's
        // setSsl(true): Vert.x would only hand us the socket after the handshake and report a
        // failed handshake without the peer's address, and the channel order under TLS is ours
        // to define (Connection.tls). The key material is loaded with Vert.x's PEM/PKCS12 options.
        long timeout = ssl == null ? 0 : cfg.tls().handshakeTimeoutMs();
        server = vertx.createNetServer(options).connectHandler(so -> {
            dev.multifdcolo.wire.ProtocolException refused = replica.admitConnection(String.valueOf(so.remoteAddress()));
            if (refused != null) {
                replica.countRejection(refused);
                LIMIT_LOG.warning(refused.getMessage());
                so.close();
                return;
            }
            if (ssl == null) {
                new Connection(replica, (NetSocketInternal) so, context);
            } else {
                Connection.tls(replica, (NetSocketInternal) so, context, ssl, timeout);
            }
        });
        return server.listen();
    }

    /** The bound port (useful with port 0 in tests). */
    public int actualPort() {
        return server.actualPort();
    }

    @Override
    public Future<?> stop() {
        return server == null ? Future.succeededFuture() : server.close();
    }
}
