package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.secondary.colo.Checkpoint;

/**
 * The end of an incoming migration that left a consistent image: a completed precopy, or a COLO
 * replica that failed over (then {@link #colo()} says at which checkpoint and why, and
 * {@code deviceState} is that checkpoint's device-state blob). The caller owns {@code memory}.
 */
public record MigrationResult(String replica, String machine, GuestMemory memory, byte[] deviceState, String vmdesc,
                              MigrationStats stats, boolean returnPath, Colo colo) {

    /** How a COLO replica ended. */
    public record Colo(long epoch, String failoverReason, Checkpoint last) {}
}
