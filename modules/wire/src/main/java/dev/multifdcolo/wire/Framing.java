package dev.multifdcolo.wire;

/**
 * How a source frames a multifd migration (§4.2, §11). Nothing on the wire says which one a peer
 * uses, so both sides must agree (or the receiver detects it from the RAM setup section, §4.3).
 */
public enum Framing {
    /** QEMU 7.2 (and newer with compat settings): one SYNC per channel before every RAM EOS,
     *  zero pages as ZERO records on the main channel, no SWITCHOVER_START. */
    LEGACY,
    /** QEMU 8.1+ defaults: MULTIFD_FLUSH records are the barriers, zero pages inside multifd
     *  packets, SWITCHOVER_START before completion. */
    MODERN
}
