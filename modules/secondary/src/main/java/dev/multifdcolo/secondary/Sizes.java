package dev.multifdcolo.secondary;

import java.util.Locale;

/** Byte sizes as operators write them: 4096, "64M", "1G", "6GiB". */
public final class Sizes {
    private Sizes() {}

    public static long parse(Object v) {
        if (v instanceof Number n) {
            return n.longValue();
        }
        String s = v.toString().trim().toUpperCase(Locale.ROOT).replace("IB", "").replace("B", "");
        long mul = 1;
        char last = s.isEmpty() ? ' ' : s.charAt(s.length() - 1);
        switch (last) {
            case 'K' -> mul = 1L << 10;
            case 'M' -> mul = 1L << 20;
            case 'G' -> mul = 1L << 30;
            case 'T' -> mul = 1L << 40;
            default -> { }
        }
        if (mul != 1) {
            s = s.substring(0, s.length() - 1);
        }
        try {
            return Math.multiplyExact(Long.parseLong(s.trim()), mul);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("not a size: '" + v + "'");
        }
    }
}
