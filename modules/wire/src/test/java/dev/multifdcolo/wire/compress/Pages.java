package dev.multifdcolo.wire.compress;

import dev.multifdcolo.wire.Wire;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.SplittableRandom;

/** Seeded page contents that look like guest RAM: random, text-like, zero, mostly zero. */
final class Pages {
    private Pages() {}

    static final int PAGE = Wire.PAGE_SIZE;

    private static final String[] WORDS = ("the of and to in is was for on that with as by at from "
            + "kernel page memory migration channel packet buffer qemu guest host error return "
            + "static void int long struct if else while for {} ( ) ; = == != -> 0x1000 NULL\n")
            .split(" ");

    enum Kind { RANDOM, TEXT, ZERO, SPARSE }

    /** Fills {@code n} pages at {@code out}'s position (advancing it) with a mix of kinds. */
    static void fill(ByteBuffer out, int n, SplittableRandom rnd) {
        for (int i = 0; i < n; i++) {
            Kind k = switch (rnd.nextInt(10)) {
                case 0, 1, 2 -> Kind.RANDOM;
                case 3, 4, 5 -> Kind.TEXT;
                case 6, 7 -> Kind.ZERO;
                default -> Kind.SPARSE;
            };
            page(out, k, rnd);
        }
    }

    static void page(ByteBuffer out, Kind kind, SplittableRandom rnd) {
        int start = out.position();
        switch (kind) {
            case RANDOM -> {
                for (int i = 0; i < PAGE; i += 8) {
                    out.putLong(rnd.nextLong());
                }
            }
            case TEXT -> {
                while (out.position() < start + PAGE) {
                    byte[] w = (WORDS[rnd.nextInt(WORDS.length)] + ' ').getBytes(StandardCharsets.US_ASCII);
                    int len = Math.min(w.length, start + PAGE - out.position());
                    out.put(w, 0, len);
                }
            }
            case ZERO -> out.put(new byte[PAGE]);
            case SPARSE -> {
                out.put(new byte[PAGE]);
                for (int j = rnd.nextInt(1, 16); j > 0; j--) {
                    out.put(start + rnd.nextInt(PAGE), (byte) rnd.nextInt(1, 256));
                }
            }
        }
    }

    static byte[] mixed(int n, long seed) {
        ByteBuffer b = ByteBuffer.allocate(n * PAGE);
        fill(b, n, new SplittableRandom(seed));
        return b.array();
    }

    static byte[] random(int bytes, long seed) {
        byte[] b = new byte[bytes];
        SplittableRandom r = new SplittableRandom(seed);
        r.nextBytes(b);
        return b;
    }
}
