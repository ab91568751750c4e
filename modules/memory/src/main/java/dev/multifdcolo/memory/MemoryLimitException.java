package dev.multifdcolo.memory;

/** The announced RAM does not fit the configured limits; nothing was allocated. */
public final class MemoryLimitException extends Exception {
    public MemoryLimitException(String message) {
        super(message);
    }
}
