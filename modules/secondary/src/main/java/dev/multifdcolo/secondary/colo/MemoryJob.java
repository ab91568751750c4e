package dev.multifdcolo.secondary.colo;

import dev.multifdcolo.memory.RamBlock;

/**
 * Memory work sent to the worker verticles over the event bus. Messages carry references only
 * (block, offsets, word ranges): a local identity codec passes the object itself, so no page byte
 * is ever serialized or copied into a message.
 */
public sealed interface MemoryJob {

    /**
     * Copy the dirty pages of bitmap words {@code [fromWord, toWord)} of one block cache → guest
     * and clear them: the checkpoint flush (§9.8), and in precopy the copy that keeps the guest
     * image equal to the cache (§9.6/§9.7) at each barrier.
     */
    record Flush(RamBlock block, int fromWord, int toWord) implements MemoryJob {}
}
