package dev.multifdcolo.secondary.colo;

/**
 * One committed COLO checkpoint as the secondary saw it.
 *
 * @param epoch         1 for the first checkpoint after precopy (0 = the precopy image)
 * @param dirtyPages    pages flushed cache → guest
 * @param runs          bulk copies the flush needed (runs of consecutive pages)
 * @param transferNanos VMSTATE_SEND received → live state's EOF (RAM transfer, our side)
 * @param flushNanos    flush start → all workers done
 * @param pauseNanos    CHECKPOINT_REQUEST received → VMSTATE_LOADED sent
 * @param blobBytes     device state bytes of this checkpoint
 * @param digest        CRC32C digest of the guest image after the commit, or null when disabled
 */
public record Checkpoint(long epoch, long dirtyPages, long runs, long transferNanos, long flushNanos, long pauseNanos,
                         int blobBytes, String digest) {
}
