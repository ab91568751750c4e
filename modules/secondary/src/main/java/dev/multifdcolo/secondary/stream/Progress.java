package dev.multifdcolo.secondary.stream;

/** What a decoder did with the bytes it was fed. */
public enum Progress {
    /** All input consumed; feed more when it arrives. */
    NEED_MORE,
    /** Stopped at a sync barrier; unconsumed input stays in the buffer. Feed again once released. */
    PAUSED,
    /** The stream this decoder reads is complete; any remaining input belongs to the next phase. */
    DONE
}
