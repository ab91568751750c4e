package dev.multifdcolo.wire;

/** COLO messages: raw be32 values on the main socket, both directions (§9.2). */
public enum ColoMessage {
    CHECKPOINT_READY,
    CHECKPOINT_REQUEST,
    CHECKPOINT_REPLY,
    VMSTATE_SEND,
    VMSTATE_SIZE,
    VMSTATE_RECEIVED,
    VMSTATE_LOADED;

    private static final ColoMessage[] BY_VALUE = values();

    public int value() {
        return ordinal();
    }

    /** @throws ProtocolException ({@link Rule#COLO_MESSAGE}) for values outside the enum */
    public static ColoMessage of(int value) {
        ProtocolException.check(value >= 0 && value < BY_VALUE.length, Rule.COLO_MESSAGE,
                "invalid COLO message 0x%08x", value);
        return BY_VALUE[value];
    }
}
