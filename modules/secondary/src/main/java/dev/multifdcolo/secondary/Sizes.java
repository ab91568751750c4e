package dev.multifdcolo.secondary;

import java.util.Locale;

/** Byte sizes as operators write them: 4096, "64M", "1G", "6GiB". */
public final class Sizes {
    private Sizes() {}

    public static long parse(Object v) {
        if (v instanceof Number) {
            return wholeNumber(v);
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

    /**
     * A JSON/YAML number that is a whole number within long range (integral doubles such as 4.0
     * included); anything else, e.g. 1.5, 1e300 or a string, is an IllegalArgumentException.
     */
    public static long wholeNumber(Object v) {
        if (v instanceof Integer || v instanceof Long || v instanceof Short || v instanceof Byte) {
            return ((Number) v).longValue();
        }
        if (v instanceof java.math.BigInteger b) {
            try {
                return b.longValueExact();
            } catch (ArithmeticException e) {
                throw new IllegalArgumentException("number out of range: " + v);
            }
        }
        if (v instanceof java.math.BigDecimal d) {
            try {
                return d.longValueExact();
            } catch (ArithmeticException e) {
                throw new IllegalArgumentException("not a whole number: " + v);
            }
        }
        if (v instanceof Number n) {
            double d = n.doubleValue();
            if (d != Math.rint(d) || d < -0x1p63 || d >= 0x1p63) {
                throw new IllegalArgumentException("not a whole number: " + v);
            }
            return (long) d;
        }
        throw new IllegalArgumentException("not a number: " + v);
    }
}
