package dev.multifdcolo.secondary.colo;

import dev.multifdcolo.secondary.stream.MainStreamDecoder;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.wire.ColoMessage;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The secondary's side of the COLO checkpoint protocol on the main socket (§9.2-§9.4, §9.10):
 * raw be32 messages from the primary, the live state in between (read by the main-stream decoder
 * in live-state mode), and VMSTATE_SIZE + the device-state blob. Non-blocking: it returns
 * {@link Progress#PAUSED} at a multifd barrier and while the checkpoint is being flushed.
 */
public final class ColoChannel {

    /** What the session does at each step. */
    public interface Listener {
        /** CHECKPOINT_REQUEST arrived: reply, pause the heartbeat. */
        void onRequest();

        /** VMSTATE_SEND arrived; the live state (RAM) follows. */
        default void onVmstateSend() {
        }

        /** The live state ended (EOF): all RAM of this checkpoint is in the cache. */
        default void onLiveStateEnd() {
        }

        /** The device state arrived in full: send RECEIVED, flush, commit, send LOADED, then {@link #checkpointDone()}. */
        void onDeviceState(byte[] blob);
    }

    private enum S { REQUEST, VMSTATE_SEND, LIVE, SIZE, SIZE_VALUE, BLOB, FLUSHING }

    private final MainStreamDecoder main;
    private final Listener listener;
    private final long maxBlob;
    private final ByteBuffer small = ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN);
    private S s = S.REQUEST;
    private byte[] blob;
    private int blobFill;

    public ColoChannel(MainStreamDecoder main, long maxBlob, Listener listener) {
        this.main = main;
        this.maxBlob = maxBlob;
        this.listener = listener;
        small.limit(4);
    }

    /** True between VMSTATE_LOADED and the next CHECKPOINT_REQUEST (no checkpoint in flight). */
    public boolean idle() {
        return s == S.REQUEST && small.position() == 0;
    }

    public boolean flushing() {
        return s == S.FLUSHING;
    }

    public Progress feed(ByteBuffer in) {
        while (in.hasRemaining()) {
            switch (s) {
                case REQUEST, VMSTATE_SEND, SIZE -> {
                    if (!gather(in)) {
                        return Progress.NEED_MORE;
                    }
                    int v = small.getInt(0);
                    ColoMessage m = ColoMessage.of(v);
                    ColoMessage want = switch (s) {
                        case REQUEST -> ColoMessage.CHECKPOINT_REQUEST;
                        case VMSTATE_SEND -> ColoMessage.VMSTATE_SEND;
                        default -> ColoMessage.VMSTATE_SIZE;
                    };
                    ProtocolException.check(m == want, Rule.COLO_UNEXPECTED, "COLO message %s while waiting for %s", m, want);
                    switch (s) {
                        case REQUEST -> {
                            listener.onRequest();
                            expect(S.VMSTATE_SEND, 4);
                        }
                        case VMSTATE_SEND -> {
                            listener.onVmstateSend();
                            main.beginLiveState();
                            s = S.LIVE;
                        }
                        default -> expect(S.SIZE_VALUE, 8);
                    }
                }
                case LIVE -> {
                    Progress p = main.feed(in);
                    if (p == Progress.PAUSED) {
                        return Progress.PAUSED;
                    }
                    if (p == Progress.DONE) {
                        listener.onLiveStateEnd();
                        expect(S.SIZE, 4);
                    }
                }
                case SIZE_VALUE -> {
                    if (!gather(in)) {
                        return Progress.NEED_MORE;
                    }
                    long n = small.getLong(0);
                    ProtocolException.check(n >= 0 && n <= maxBlob, Rule.COLO_VMSTATE_LIMIT,
                            "VMSTATE_SIZE %s bytes, the bound is %d", Long.toUnsignedString(n), maxBlob);
                    blob = new byte[(int) n];
                    blobFill = 0;
                    s = S.BLOB;
                    if (n == 0) {
                        return deviceStateDone();
                    }
                }
                case BLOB -> {
                    int k = Math.min(in.remaining(), blob.length - blobFill);
                    in.get(blob, blobFill, k);
                    blobFill += k;
                    if (blobFill == blob.length) {
                        return deviceStateDone();
                    }
                }
                case FLUSHING -> {
                    return Progress.PAUSED;   // the primary sends nothing until LOADED; keep it queued
                }
            }
        }
        return s == S.FLUSHING ? Progress.PAUSED : Progress.NEED_MORE;
    }

    private Progress deviceStateDone() {
        s = S.FLUSHING;
        byte[] b = blob;
        blob = null;
        listener.onDeviceState(b);
        return Progress.PAUSED;
    }

    /** The checkpoint was committed (or failed over); wait for the next request. */
    public void checkpointDone() {
        expect(S.REQUEST, 4);
    }

    private void expect(S next, int n) {
        s = next;
        small.clear().limit(n);
    }

    private boolean gather(ByteBuffer in) {
        int n = Math.min(in.remaining(), small.remaining());
        small.put(small.position(), in, in.position(), n);
        small.position(small.position() + n);
        in.position(in.position() + n);
        return !small.hasRemaining();
    }

    /** A close is clean only between checkpoints. */
    public String stateName() {
        return s.name().toLowerCase();
    }
}
