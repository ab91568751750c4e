package dev.multifdcolo.memory;

import java.nio.file.Path;

/**
 * Where guest images live. Anonymous memory by default; a directory gives one sparse,
 * memory-mapped file per block (survives the process, can be inspected with standard tools).
 */
public sealed interface Backing {
    record Anonymous() implements Backing {}

    record Files(Path directory) implements Backing {}

    static Backing anonymous() {
        return new Anonymous();
    }

    static Backing files(Path directory) {
        return new Files(directory);
    }
}
