package dev.multifdcolo.wire;

/** MIG_CMD values carried by COMMAND records (§7.6). {@code fixedLength < 0}: variable. */
public enum Command {
    INVALID(0, -1),
    OPEN_RETURN_PATH(1, 0),
    PING(2, 4),
    POSTCOPY_ADVISE(3, -1),
    POSTCOPY_LISTEN(4, 0),
    POSTCOPY_RUN(5, 0),
    POSTCOPY_RAM_DISCARD(6, -1),
    PACKAGED(7, 4),
    ENABLE_COLO(8, 0),
    POSTCOPY_RESUME(9, 0),
    RECV_BITMAP(10, -1),
    SWITCHOVER_START(11, 0);

    public final int id;
    public final int fixedLength;

    Command(int id, int fixedLength) {
        this.id = id;
        this.fixedLength = fixedLength;
    }

    private static final Command[] BY_ID = values();

    /** @return the command, or null when the id is unknown */
    public static Command of(int id) {
        return id >= 0 && id < BY_ID.length ? BY_ID[id] : null;
    }
}
