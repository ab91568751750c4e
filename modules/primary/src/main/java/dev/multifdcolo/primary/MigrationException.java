package dev.multifdcolo.primary;

import java.io.IOException;

/** The migration could not be sent or the destination reported a failure; one-line message. */
public final class MigrationException extends IOException {
    public MigrationException(String message) {
        super(message);
    }

    public MigrationException(String message, Throwable cause) {
        super(message, cause);
    }
}
