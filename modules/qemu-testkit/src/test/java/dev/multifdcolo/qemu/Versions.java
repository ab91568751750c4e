package dev.multifdcolo.qemu;

import java.util.Random;

/** Test helpers shared by the real-QEMU tests. */
final class Versions {
    static final int MIB = 1024 * 1024;
    static final int RAM = 64 * MIB;

    private Versions() {
    }

    /** The QEMU of that version, or the test is aborted (skipped) with the reason. */
    static QemuBinary require(String version) {
        return switch (version) {
            case "7.2" -> QemuBinaries.assume72();
            case "11.1" -> QemuBinaries.assume111();
            default -> throw new IllegalArgumentException(version);
        };
    }

    static byte[] pattern(long seed, int size) {
        byte[] data = new byte[size];
        new Random(seed).nextBytes(data);
        return data;
    }

    /** Fails with the first differing offset instead of dumping 64 MiB. */
    static void assertSameBytes(byte[] expected, byte[] actual, String what) {
        if (expected.length != actual.length) {
            throw new AssertionError(what + ": length " + actual.length + ", expected " + expected.length);
        }
        int at = java.util.Arrays.mismatch(expected, actual);
        if (at >= 0) {
            int differing = 0;
            for (int i = at; i < expected.length; i++) {
                if (expected[i] != actual[i]) {
                    differing++;
                }
            }
            throw new AssertionError(String.format("%s: first difference at 0x%x (expected %02x, got %02x), %d bytes differ",
                    what, at, expected[at] & 0xff, actual[at] & 0xff, differing));
        }
    }
}
