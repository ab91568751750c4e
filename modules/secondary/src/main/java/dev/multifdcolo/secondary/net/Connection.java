package dev.multifdcolo.secondary.net;

import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.vertx.core.Context;
import io.vertx.core.internal.net.NetSocketInternal;

import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.logging.Logger;

/**
 * One accepted TCP connection of a replica port. It reads Netty {@link ByteBuf}s directly
 * ({@link NetSocketInternal#messageHandler}), so received bytes are never copied into Vert.x heap
 * buffers: decoders copy pages straight from the socket buffer into guest memory.
 *
 * <p>Lifecycle: classify by the first 4 bytes (QEVM → main, 0x11223344 → multifd, §1.2), then
 * feed a decoder. A decoder may pause (sync barrier): the socket stops being read and unconsumed
 * bytes stay queued until {@link #resumeDecoding()}. Everything runs on this connection's event
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
        context.owner().setTimer(setup, id -> runOnLoop(() -> {
            if (decoder == null && !rejected && !closeSeen) {
                reject(new ProtocolException(Rule.TIMEOUT, String.format("connection %s sent %d byte(s) in %d ms,"
                        + " not enough to tell its channel (channel-setup-timeout-ms)", remote(), pendingBytes, setup)));
            }
        }));
    }

    /** The replica's open-connection count was decremented for this connection. */
    private boolean counted;

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
            classify();
        } else if (!paused) {
            drain();
        } else {
            throttle();
        }
    }

    /** Peeks the first 4 bytes without consuming them (§1.2). */
    private void classify() {
        if (pendingBytes < 4) {
            return;
        }
        int magic = 0;
        int got = 0;
        for (ByteBuf b : pending) {
            for (int i = b.readerIndex(); i < b.writerIndex() && got < 4; i++, got++) {
                magic = (magic << 8) | (b.getByte(i) & 0xff);
            }
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
