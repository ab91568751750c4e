package dev.multifdcolo.qemu;

import io.vertx.core.json.JsonObject;

/**
 * A migration did not reach the wanted status: it ended in {@code failed}/{@code cancelled},
 * or it was still elsewhere when the timeout expired ({@link #timedOut()}).
 */
public class MigrationException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String status;
    private final String errorDesc;
    private final boolean timedOut;
    private final transient JsonObject info;

    public MigrationException(String message, String status, String errorDesc, boolean timedOut, JsonObject info) {
        super(message);
        this.status = status;
        this.errorDesc = errorDesc;
        this.timedOut = timedOut;
        this.info = info == null ? new JsonObject() : info.copy();
    }

    /** The last status seen in {@code query-migrate} ({@code "none"} if QEMU reported none). */
    public String status() {
        return status;
    }

    /** QEMU's {@code error-desc}, or null if it gave none. */
    public String errorDesc() {
        return errorDesc;
    }

    /** True if the timeout expired (as opposed to the migration failing or being cancelled). */
    public boolean timedOut() {
        return timedOut;
    }

    /** The last complete {@code query-migrate} answer. */
    public JsonObject info() {
        return info.copy();
    }
}
