package dev.multifdcolo.primary;

/**
 * One COLO checkpoint as the primary emulator saw it.
 *
 * @param epoch         1 for the first checkpoint after precopy (the secondary's numbering)
 * @param dirtyPages    pages sent (distinct pages the workload wrote in the interval)
 * @param zeroPages     of those, pages sent as zero pages
 * @param bytes         wire bytes of the checkpoint, main plus multifd channels
 * @param transferNanos VMSTATE_SEND written → the live state's EOF flushed, multifd syncs
 *                      written (the memory-transfer time)
 * @param pauseNanos    CHECKPOINT_REQUEST written → VMSTATE_LOADED read (the guest's pause)
 * @param digest        {@code GuestMemory.fastDigest()} of the primary's memory at this
 *                      checkpoint (null when digests are off)
 */
public record ColoCheckpoint(long epoch, long dirtyPages, long zeroPages, long bytes, long transferNanos,
                             long pauseNanos, String digest) {

    /** One line for logs and the CLI. */
    public String line() {
        return String.format(java.util.Locale.ROOT,
                "checkpoint %d: %d dirty pages (%d zero), %s, transfer %.3f ms, pause %.3f ms%s",
                epoch, dirtyPages, zeroPages, SendStats.human(bytes), transferNanos / 1e6, pauseNanos / 1e6,
                digest == null ? "" : ", digest " + digest);
    }
}
