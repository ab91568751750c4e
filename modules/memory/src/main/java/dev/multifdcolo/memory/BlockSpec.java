package dev.multifdcolo.memory;

/** A RAMBlock as announced by the source's MEM_SIZE list (§7.5.1): idstr and used_length. */
public record BlockSpec(String name, long length) {
    public BlockSpec {
        if (name == null || name.isEmpty() || length <= 0) {
            throw new IllegalArgumentException("block needs a name and a positive length");
        }
    }
}
