package dev.multifdcolo.secondary.stream;

/**
 * Which main-channel record pairs with one SYNC packet per channel (§4.3).
 * {@link #AUTO} decides from the RAM setup section: a MULTIFD_FLUSH before its EOS means modern.
 */
public enum FlushMode {
    LEGACY, MODERN, AUTO;

    public static FlushMode parse(String s) {
        return valueOf(s.trim().toUpperCase(java.util.Locale.ROOT));
    }
}
