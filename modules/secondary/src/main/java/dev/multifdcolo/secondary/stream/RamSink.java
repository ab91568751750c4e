package dev.multifdcolo.secondary.stream;

import dev.multifdcolo.memory.RamBlock;

import java.lang.foreign.MemorySegment;

/**
 * Where received pages go. The decoders validate and locate pages; the sink decides the target
 * (the guest image, or the COLO cache) and what else a page implies (mirroring to the guest during
 * COLO precopy, recording the dirty bitmap in COLO state — PROTOCOL.md §9.6).
 *
 * <p>Called from event loops of several channels at once: implementations are thread-safe.
 */
public interface RamSink {
    /** @return the named block, or null when the source did not announce it (or no list yet) */
    RamBlock block(String name);

    /** False until the RAMBlock list is known (a multifd packet that comes earlier waits for it). */
    default boolean hasBlockList() {
        return true;
    }

    /** The segment normal-page bytes of {@code block} are written into, at their block offsets. */
    MemorySegment pageTarget(RamBlock block);

    /** Applies {@code count} zero pages (offsets already validated). */
    void zeroPages(RamBlock block, long[] offsets, int from, int count);

    /** Called after the bytes of {@code count} normal pages were written to {@link #pageTarget}. */
    void normalPagesWritten(RamBlock block, long[] offsets, int from, int count);
}
