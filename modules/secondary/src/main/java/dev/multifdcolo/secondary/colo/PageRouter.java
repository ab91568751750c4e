package dev.multifdcolo.secondary.colo;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.stream.RamSink;
import dev.multifdcolo.wire.Wire;

import java.lang.foreign.MemorySegment;

/**
 * Where every received page goes (§9.6, §9.7) — the same rules for multifd packets and
 * main-channel records, normal and zero pages:
 *
 * <table>
 * <tr><th>mode</th><th>normal page</th><th>zero page</th></tr>
 * <tr><td>PLAIN</td><td>guest image</td><td>zero the guest page</td></tr>
 * <tr><td>COLO_PRECOPY</td><td>cache, bitmap bit set; at the round's barrier the workers copy the
 * round's pages cache → guest</td><td>zero cache and guest</td></tr>
 * <tr><td>COLO_STATE</td><td>cache only, bitmap bit set</td><td>zero the cache page, bitmap bit set</td></tr>
 * </table>
 *
 * Called concurrently from every channel's event loop; recording is lock-free.
 *
 * <p>Why precopy mirrors at barriers and not per packet: a per-packet copy job racing the next
 * write of the same page (7.2 sends duplicates; jobs on N workers finish in any order) can leave
 * an older or torn page in the guest image. At a barrier every channel is paused, so the copy of
 * the round's pages sees the final cache content — the guest equals the cache at every sync
 * point, and at COLO start.
 */
public final class PageRouter implements RamSink {

    /** Where received pages go. */
    public enum Mode { PLAIN, COLO_PRECOPY, COLO_STATE }

    private volatile GuestMemory memory;
    private volatile Mode mode = Mode.PLAIN;

    public void memory(GuestMemory m) {
        this.memory = m;
    }

    public GuestMemory memory() {
        return memory;
    }

    public Mode mode() {
        return mode;
    }

    public void mode(Mode m) {
        this.mode = m;
    }

    @Override
    public boolean hasBlockList() {
        return memory != null;
    }

    @Override
    public RamBlock block(String name) {
        GuestMemory m = memory;
        return m == null ? null : m.block(name);
    }

    @Override
    public MemorySegment pageTarget(RamBlock block) {
        return mode == Mode.PLAIN ? block.guest() : block.cache();
    }

    @Override
    public void zeroPages(RamBlock block, long[] offsets, int from, int count) {
        switch (mode) {
            case PLAIN -> fillZero(block.guest(), offsets, from, count);
            case COLO_PRECOPY -> {
                fillZero(block.cache(), offsets, from, count);
                fillZero(block.guest(), offsets, from, count);
            }
            case COLO_STATE -> {
                fillZero(block.cache(), offsets, from, count);
                record(block, offsets, from, count);
            }
        }
    }

    @Override
    public void normalPagesWritten(RamBlock block, long[] offsets, int from, int count) {
        switch (mode) {
            case PLAIN -> { }
            case COLO_PRECOPY, COLO_STATE -> record(block, offsets, from, count);
        }
    }

    /**
     * Zeroes pages that are not zero already (QEMU's ram_handle_zero does the same): a page
     * never written reads as the kernel's shared zero page, so checking first avoids both the
     * memset and faulting in memory for the many zero pages of a guest.
     */
    private static void fillZero(MemorySegment seg, long[] offsets, int from, int count) {
        for (int i = from; i < from + count; i++) {
            if (!RamBlock.isZero(seg, offsets[i])) {
                seg.asSlice(offsets[i], Wire.PAGE_SIZE).fill((byte) 0);
            }
        }
    }

    /** The page changed in the cache: the next flush must copy it (atomic, any thread). */
    private static void record(RamBlock block, long[] offsets, int from, int count) {
        var bm = block.bitmap();
        for (int i = from; i < from + count; i++) {
            bm.set(offsets[i] >>> Wire.PAGE_SHIFT);
        }
    }
}
