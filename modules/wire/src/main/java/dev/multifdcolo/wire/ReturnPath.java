package dev.multifdcolo.wire;

import java.nio.ByteBuffer;

/** Return-path messages, destination to source: be16 type, be16 length, body (§8.1). */
public final class ReturnPath {
    private ReturnPath() {}

    public static final int SHUT = 1;
    public static final int PONG = 2;

    /** SHUT(0) = "destination finished OK"; SHUT(1) = error. 11.1 needs SHUT before COLO's READY. */
    public static ByteBuffer shut(boolean failed) {
        return message(SHUT, failed ? 1 : 0);
    }

    public static ByteBuffer pong(int value) {
        return message(PONG, value);
    }

    private static ByteBuffer message(int type, int value) {
        ByteBuffer b = ByteBuffer.allocate(8);
        b.putShort((short) type).putShort((short) 4).putInt(value).flip();
        return b;
    }
}
