package dev.multifdcolo.secondary.colo;

import dev.multifdcolo.memory.RamBlock;

/**
 * Memory work sent to the worker verticles over the event bus. Messages carry references only
 * (block, offsets, word ranges): a local identity codec passes the object itself, so no page byte
 * is ever serialized or copied into a message.
 */
public sealed interface MemoryJob {

    /**
     * COLO precopy (§9.6/§9.7): pages just received into the cache are copied to the guest image,
     * keeping both identical.
     */
    record Mirror(RamBlock block, long[] offsets, int count) implements MemoryJob {}

    /** Checkpoint flush (§9.8) of bitmap words {@code [fromWord, toWord)} of one block. */
    record Flush(RamBlock block, int fromWord, int toWord) implements MemoryJob {}
}
