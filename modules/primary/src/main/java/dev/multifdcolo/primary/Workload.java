package dev.multifdcolo.primary;

import dev.multifdcolo.memory.GuestMemory;

/**
 * What the emulated guest does between two COLO checkpoints: it writes guest memory and marks
 * every page it wrote (the dirty log a real primary would sync). Implementations are seeded and
 * deterministic: the same seed, memory layout and call sequence give the same writes.
 * Not thread safe; called from the primary's thread while no checkpoint is in flight.
 *
 * @see Workloads
 */
public interface Workload {
    /** A short name for logs and the CLI ("idle", "load", ...). */
    String name();

    /**
     * One interval of guest activity: writes {@code memory}'s guest images and marks every page
     * written in {@code dirty} (a page written several times is marked once).
     */
    void step(GuestMemory memory, DirtyPages dirty);
}
