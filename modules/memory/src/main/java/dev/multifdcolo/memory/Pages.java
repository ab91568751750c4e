package dev.multifdcolo.memory;

/** Target page geometry (x86). Kept here so the memory module does not depend on the wire. */
public final class Pages {
    private Pages() {}

    public static final int SIZE = 4096;
    public static final int SHIFT = 12;
}
