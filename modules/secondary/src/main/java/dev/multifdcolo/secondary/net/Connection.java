package dev.multifdcolo.secondary.net;

import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslHandler;
import io.vertx.core.Context;
import io.vertx.core.internal.net.NetSocketInternal;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.logging.Logger;

/**
 * One accepted TCP connection of a replica port. It reads Netty {@link ByteBuf}s directly
 * ({@link NetSocketInternal#messageHandler}), so received bytes are never copied into Vert.x heap
 * buffers: decoders copy pages straight from the socket buffer into guest memory.
 *
 * <p>Lifecycle: classify by the first 4 bytes (QEVM → main, 0x11223344 → multifd, §1.2), then
 * feed a decoder. With TLS ({@link #tls}) a Netty {@link SslHandler} sits in front of this
 * connection's handler, so the {@code ByteBuf}s we get are decrypted application data (owned and
 * released by us exactly like socket buffers), and the channel is classified by order instead.
 * A decoder may pause (sync barrier): the socket stops being read and unconsumed bytes stay
 * queued until {@link #resumeDecoding()}. Everything runs on this connection's event
 * loop; other threads go through {@link #runOnLoop}.
 */
public final class Connection {
    private static final Logger LOG = Logger.getLogger(Connection.class.getName());

    /** What reads this connection's bytes once it is classified. */
    public interface Decoder {
        Progress feed(ByteBuffer in);

        void onClose();
    }

    private final Replica replica;
    private final NetSocketInternal socket;
    private final Context context;
    private final ArrayDeque<ByteBuf> pending = new ArrayDeque<>();
    private int pendingBytes;
    private IncomingMigration session;
    private Decoder decoder;
    private boolean paused;
    private boolean closed;
    private boolean rejected;
    private int channelId = -1;

    public Connection(Replica replica, NetSocketInternal socket, Context context) {
        this.replica = replica;
        this.socket = socket;
        this.context = context;
        socket.messageHandler(this::onMessage);
        socket.closeHandler(v -> {
            if (!counted) {
                counted = true;
                replica.connectionClosed();
            }
            onClosed();
        });
        socket.exceptionHandler(e -> LOG.fine(() -> "socket error from " + remote() + ": " + e));
        long setup = replica.config().guards().setupTimeoutMs();
        setupTimer = context.owner().setTimer(setup, id -> runOnLoop(() -> {
            if (decoder == null && !rejected && !closeSeen) {
                reject(new ProtocolException(Rule.TIMEOUT, String.format("connection %s sent %d byte(s) in %d ms,"
                        + " not enough to tell its channel (channel-setup-timeout-ms)", remote(), pendingBytes, setup)));
            }
        }));
    }

    /** The replica's open-connection count was decremented for this connection. */
    private boolean counted;
    /** Drops a connection that does not say what it is in time; cancelled once it is classified. */
    private final long setupTimer;

    // ------------------------------------------------------------------ TLS

    /** TLS: not placed in the order yet (no byte is classified before it is). */
    private boolean handshaking;
    /** TLS: the session this connection was placed in, and its role there. */
    private IncomingMigration ordered;
    private boolean orderedMain;
    private long acceptSeq;

    /**
     * A connection of a TLS replica port: puts an {@link SslHandler} at the head of the pipeline
     * (called from the connect handler, before the first read), then waits for the handshake.
     *
     * <p>Classification by order (PROTOCOL.md §1.2: a QEMU destination cannot peek under TLS, so
     * the first channel of a migration is the main channel and every later one a multifd
     * channel). The order is the <b>accept order</b> (as our connect handlers register
     * connections, {@link Replica#tlsAccepted}) among connections that pass the handshake, not
     * the order in which handshakes finish: a QEMU source (7.2 and 11.1) connects its multifd
     * channels only after the main channel's handshake finished on its side, so the main channel
     * is always accepted first — but its handshake can finish on our side after theirs (traced
     * with both versions, multifd 4: the main channel's handshake completed after three or all
     * four of the multifd channels', by up to ~45 ms, although they were accepted 20-40 ms after
     * it; ordering by handshake completion failed 4 of 4 such runs, with NIO and io_uring). A connection
     * that fails its handshake takes no place; one accepted earlier and still in its handshake
     * holds back the choice of the main channel until it ends (at most the handshake timeout).
     * The first 4 decrypted bytes must then match the role; if not, the session is rejected as
     * {@code channel-order} (a named error, not a hang).
     */
    public static Connection tls(Replica replica, NetSocketInternal socket, Context context, SslContext ssl, long timeoutMs) {
        Connection c = new Connection(replica, socket, context);
        c.handshaking = true;
        c.acceptSeq = replica.tlsAccepted(c);
        var ch = socket.channelHandlerContext().channel();
        String host = null;
        int port = -1;
        if (ch.remoteAddress() instanceof InetSocketAddress a) {
            host = a.getHostString();
            port = a.getPort();
        }
        SslHandler h = ssl.newHandler(ch.alloc(), host, port);
        h.setHandshakeTimeoutMillis(timeoutMs);
        ch.pipeline().addFirst("mfc-tls", h);
        h.handshakeFuture().addListener(f -> c.runOnLoopNow(() -> {
            if (f.isSuccess()) {
                replica.tlsHandshakeEnded(c.acceptSeq, c, true, Connection::place);
            } else {
                c.handshakeFailed(f.cause());
                replica.tlsHandshakeEnded(c.acceptSeq, c, false, Connection::place);
            }
        }));
        return c;
    }

    /** Runs {@code r} now when on this connection's loop (the handshake listener is), else queues it there. */
    private void runOnLoopNow(Runnable r) {
        if (socket.channelHandlerContext().executor().inEventLoop()) {
            r.run();
        } else {
            runOnLoop(r);
        }
    }

    private static void place(Replica.Placement p) {
        p.connection().runOnLoopNow(() -> p.connection().placed(p.session(), p.main()));
    }

    /** TLS: this connection's place in the order is decided; classify what it has sent. */
    private void placed(IncomingMigration s, boolean main) {
        handshaking = false;
        if (s == null) {
            reject(replica.refusal(this));      // the replica failed over and refuses new migrations
            return;
        }
        ordered = s;
        orderedMain = main;
        LOG.fine(() -> replica.name() + ": TLS channel " + remote() + " is the " + (main ? "main" : "a multifd")
                + " channel by accept order");
        if (decoder == null) {
            classify();       // bytes that came while the place was being decided
        }
        if (closeSeen) {
            closeSeen = false;
            onClosed();       // the peer closed while the place was being decided: handle it now, in order
        }
    }

    private void handshakeFailed(Throwable cause) {
        handshaking = false;
        String why = handshakeFailure(cause);
        ProtocolException e = new ProtocolException(Rule.TLS_HANDSHAKE, "TLS handshake from " + remote() + " failed: " + why);
        rejected = true;
        // one line, and the replica keeps listening: this connection never joined a session
        LOG.warning(replica.name() + ": " + e.getMessage());
        replica.countRejection(e);
        releasePending();
        socket.close();
    }

    /** One short reason for the log line (JSSE's own text where it has one: it names the certificate problem). */
    static String handshakeFailure(Throwable cause) {
        if (cause instanceof io.netty.handler.ssl.SslHandshakeTimeoutException) {
            return "no complete handshake in time (" + cause.getMessage() + ")";
        }
        if (cause instanceof io.netty.handler.ssl.NotSslRecordException n) {
            String m = String.valueOf(n.getMessage());
            int at = m.lastIndexOf(' ');
            String hex = at < 0 ? "" : m.substring(at + 1);
            return "not a TLS client (its first bytes: " + hex.substring(0, Math.min(16, hex.length())) + ")";
        }
        if (cause instanceof java.nio.channels.ClosedChannelException) {
            return "the connection closed before the handshake finished";
        }
        String why = cause.getMessage() == null ? cause.getClass().getSimpleName() : cause.getMessage();
        return why.length() > 300 ? why.substring(0, 300) + "..." : why;
    }

    /** TLS: the first 4 decrypted bytes must fit the role the accept order gave this connection. */
    private void classifyByOrder(int magic) {
        IncomingMigration s = ordered;
        if (s.finished()) {
            closeQuietly();      // the migration it was ordered into has ended meanwhile
            return;
        }
        String expected = orderedMain ? "QEVM" : "the multifd magic";
        ProtocolException wrong = null;
        if (magic == (orderedMain ? Wire.QEVM_MAGIC : Wire.MULTIFD_MAGIC)) {
            int n = pendingBytes;
            session = s;
            if (orderedMain) {
                s.attachMain(this);
            } else {
                s.attachMultifd(this);
            }
            if (!rejected) {
                s.countBytes(-1, n);
            }
            return;
        } else if (magic == Wire.QEVM_MAGIC || magic == Wire.MULTIFD_MAGIC) {
            wrong = new ProtocolException(Rule.CHANNEL_ORDER, String.format("TLS connection from %s is %s channel by"
                    + " order (with TLS, channels are classified by accept order: the first connection of a migration is"
                    + " the main channel, later ones are multifd channels) but starts with %s, not %s", remote(),
                    orderedMain ? "the main" : "a multifd", magic == Wire.QEVM_MAGIC ? "QEVM" : "the multifd magic", expected));
        } else {
            wrong = new ProtocolException(Rule.CHANNEL_MAGIC, String.format("TLS connection from %s (%s channel by order)"
                    + " starts with 0x%08x, not %s", remote(), orderedMain ? "main" : "a multifd", magic, expected));
        }
        // its place in the order is taken: the migration cannot go on (QEMU's destination fails it too)
        rejected = true;
        releasePending();
        socket.close();
        if (s.finished()) {
            replica.countRejection(wrong);
            ProtocolException w = wrong;
            LOG.warning(() -> replica.name() + ": rejected connection " + remote() + ": " + w.getMessage());
        } else {
            s.fail(wrong);
        }
    }

    public io.vertx.core.Vertx vertx() {
        return context.owner();
    }

    private boolean main;
    private io.netty.channel.ChannelOption<Boolean> quickAck;

    /**
     * Marks the main channel: before every read we re-arm TCP_QUICKACK (Linux clears it again
     * after a delayed ACK). With QEMU's Nagle-on main channel, a delayed ACK from us stalls the
     * primary's small COLO writes by ~40 ms per checkpoint (QEMU-11.1-NOTES §3.3).
     */
    public void mainChannel(boolean isMain) {
        this.main = isMain;
        quickAck = QuickAck.option(socket.channelHandlerContext().channel());
    }

    public String remote() {
        return String.valueOf(socket.remoteAddress());
    }

    public int channelId() {
        return channelId;
    }

    public void channelId(int id) {
        this.channelId = id;
    }

    private void onMessage(Object msg) {
        if (!(msg instanceof ByteBuf buf)) {
            return;
        }
        if (closed || rejected) {
            buf.release();
            return;
        }
        if (main && quickAck != null) {
            QuickAck.rearm(socket.channelHandlerContext().channel(), quickAck);
        }
        int n = buf.readableBytes();
        if (session != null && !rejected) {
            session.countBytes(channelId, n);
        }
        pending.add(buf);
        pendingBytes += n;
        if (decoder == null) {
            if (!handshaking) {
                classify();
            }
        } else if (!paused) {
            drain();
        } else {
            throttle();
        }
    }

    /** Peeks the first 4 bytes without consuming them (§1.2). */
    private void classify() {
        if (pendingBytes < 4 || closed || rejected) {
            return;
        }
        int magic = 0;
        int got = 0;
        for (ByteBuf b : pending) {
            for (int i = b.readerIndex(); i < b.writerIndex() && got < 4; i++, got++) {
                magic = (magic << 8) | (b.getByte(i) & 0xff);
            }
        }
        if (ordered != null) {
            classifyByOrder(magic);
            return;
        }
        if (magic != Wire.QEVM_MAGIC && magic != Wire.MULTIFD_MAGIC) {
            reject(new ProtocolException(Rule.CHANNEL_MAGIC,
                    String.format("connection from %s starts with 0x%08x, neither QEVM nor multifd", remote(), magic)));
            return;
        }
        IncomingMigration s;
        try {
            s = replica.sessionFor(this);
        } catch (ProtocolException refused) {
            reject(refused);
            return;
        }
        int n = pendingBytes;
        session = s;
        if (magic == Wire.QEVM_MAGIC) {
            s.attachMain(this);
        } else {
            s.attachMultifd(this);
        }
        if (!rejected) {
            s.countBytes(-1, n);     // a refused extra connection must not keep the session's heartbeat alive
        }
    }

    /** Called by the session once classified. */
    public void start(Decoder d) {
        this.decoder = d;
        context.owner().cancelTimer(setupTimer);
        if (!rejected) {
            drain();
        }
    }

    /** Closes without counting a rejection (the session's failure counts it). */
    public void closeQuietly() {
        rejected = true;
        releasePending();
        socket.close();
    }

    /** Closes this connection with a logged reason; does not touch any session. */
    public void reject(ProtocolException e) {
        rejected = true;
        replica.countRejection(e);
        LOG.warning(() -> replica.name() + ": rejected connection " + remote() + ": " + e.getMessage());
        releasePending();
        socket.close();
    }

    private void drain() {
        while (!paused && !pending.isEmpty() && !closed && !rejected) {
            ByteBuf b = pending.peekFirst();
            ByteBuffer nio = b.nioBufferCount() == 1 ? b.internalNioBuffer(b.readerIndex(), b.readableBytes()) : b.nioBuffer();
            int before = nio.position();
            Progress p;
            try {
                p = decoder.feed(nio);
            } catch (ProtocolException e) {
                session.fail(e);
                return;
            } catch (RuntimeException e) {
                session.fail(e);
                return;
            }
            int used = nio.position() - before;
            b.skipBytes(used);
            pendingBytes -= used;
            if (!b.isReadable()) {
                pending.pollFirst().release();
            }
            if (p == Progress.PAUSED || p == Progress.DONE) {
                pause();
                return;
            }
        }
    }

    /**
     * Bytes a paused decoder may have queued before the socket stops being read. Reading on
     * while paused (up to this much) keeps noticing a peer that closes or resets; beyond it Netty's
     * auto-read is switched off, so the kernel's receive window pushes back on the source.
     */
    static final int HIGH_WATER = 1 << 20;

    private boolean readingOff;

    private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);

    private void feedNothing() {
        try {
            Progress p = decoder.feed(EMPTY);
            if (p == Progress.PAUSED || p == Progress.DONE) {
                pause();
            }
        } catch (RuntimeException e) {
            session.fail(e);
        }
    }

    private void pause() {
        paused = true;
        throttle();
    }

    private void throttle() {
        if (paused && !readingOff && pendingBytes >= HIGH_WATER) {
            readingOff = true;
            socket.channelHandlerContext().channel().config().setAutoRead(false);
        }
    }

    /** Resumes a decoder that paused at a barrier (must run on this connection's loop). */
    public void resumeDecoding() {
        if (!paused || rejected || closed) {
            return;
        }
        paused = false;
        if (pending.isEmpty()) {
            feedNothing();       // a decoder may have work that needs no new bytes (a held packet)
        }
        drain();
        if (paused) {
            return;
        }
        if (closeSeen) {
            finishClose();       // the peer closed while we were paused: handle it now, in order
        } else if (readingOff) {
            readingOff = false;
            socket.channelHandlerContext().channel().config().setAutoRead(true);
        }
    }

    /** Barrier release from another channel's thread. */
    public void resumeFromOtherThread() {
        runOnLoop(this::resumeDecoding);
    }

    public void runOnLoop(Runnable r) {
        context.runOnContext(v -> r.run());
    }

    /** Writes bytes on this socket (return path, COLO replies). */
    public void write(ByteBuffer b) {
        ByteBuf out = Unpooled.wrappedBuffer(b);
        if (context.isEventLoopContext() && Context.isOnEventLoopThread() && io.vertx.core.Vertx.currentContext() == context) {
            socket.writeMessage(out);
        } else {
            runOnLoop(() -> socket.writeMessage(out));
        }
    }

    /** Closes once queued writes are flushed. */
    public void closeAfterWrites() {
        runOnLoop(() -> {
            releasePending();
            socket.close();
        });
    }

    private boolean closeSeen;

    private void onClosed() {
        if (closeSeen) {
            return;
        }
        closeSeen = true;
        if (handshaking && !rejected) {
            return;           // TLS: handled once this connection's place in the order is decided
        }
        if (decoder == null && !rejected && ordered != null && !ordered.finished()) {
            // TLS: a channel holds its place in the order from its handshake on; closing before its
            // first 4 bytes leaves the migration without that channel
            closed = true;
            releasePending();
            ordered.fail(new ProtocolException(Rule.CHANNEL_CLOSED, "TLS connection " + remote() + " (the "
                    + (orderedMain ? "main" : "a multifd") + " channel by order) closed before sending its first bytes"));
            return;
        }
        if (decoder == null || rejected) {
            closed = true;
            releasePending();
            return;
        }
        if (paused) {
            // Bytes queued behind a barrier still belong to the stream, so the close waits for the
            // release — unless the session says the barrier can never be released.
            if (session != null && !session.closedWhilePaused(this)) {
                closed = true;
                releasePending();
            }
            return;
        }
        finishClose();
    }

    private void finishClose() {
        if (closed) {
            return;
        }
        closed = true;
        // Bytes still queued behind a barrier are part of the stream: a close is only clean at a
        // record boundary with nothing left.
        boolean leftover = !pending.isEmpty();
        releasePending();
        try {
            if (leftover && !session.finished()) {
                throw new ProtocolException(Rule.CHANNEL_TRUNCATED, "connection " + remote() + " closed with unread bytes");
            }
            decoder.onClose();
        } catch (ProtocolException e) {
            session.fail(e);
            return;
        } catch (RuntimeException e) {
            session.fail(e);
            return;
        }
        session.connectionClosed(this);
    }

    private void releasePending() {
        ByteBuf b;
        while ((b = pending.pollFirst()) != null) {
            b.release();
        }
        pendingBytes = 0;
    }
}
