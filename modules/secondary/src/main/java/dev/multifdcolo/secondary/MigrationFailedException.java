package dev.multifdcolo.secondary;

import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;

/** An incoming migration ended without a result; {@link #rule()} says why (null: I/O or internal). */
public final class MigrationFailedException extends RuntimeException {
    private final Rule rule;

    public MigrationFailedException(String replica, Throwable cause) {
        super("replica " + replica + ": " + cause.getMessage(), cause, false, false);
        this.rule = cause instanceof ProtocolException p ? p.rule() : null;
    }

    public Rule rule() {
        return rule;
    }
}
