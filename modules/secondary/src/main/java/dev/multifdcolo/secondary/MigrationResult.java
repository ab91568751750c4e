package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.GuestMemory;

/**
 * A completed incoming migration: the guest image, the device sections kept verbatim and the
 * source's VMDESCRIPTION. The caller owns {@code memory} and closes it.
 */
public record MigrationResult(String replica, String machine, GuestMemory memory, byte[] deviceState, String vmdesc,
                              MigrationStats stats, boolean returnPath) {
}
