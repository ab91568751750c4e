package dev.multifdcolo.secondary.fuzz;

import dev.multifdcolo.wire.Wire;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Byte-level mutations of a valid input, AFL style, all driven by one {@link SplittableRandom}
 * so that a (seed index, mutation seed) pair reproduces an input exactly. Stacks 1-6 of: bit
 * flips, byte / be16 / be32 / be64 overwrites with interesting values, inserts (random bytes or
 * protocol tokens), deletes, duplicated ranges, truncation, splicing with another input,
 * length-field edits (a be32 that looks like a length of what follows), multifd header field
 * edits (found by the packet magic), and long repetitions of a token or a chunk.
 */
public final class Mutator {
    private final SplittableRandom r;
    /** Limits the rig configures (vmdesc, device state, blob, RAM...): values at and around them. */
    private final long[] bounds;

    public Mutator(SplittableRandom r, long... bounds) {
        this.r = r;
        this.bounds = bounds;
    }

    private static final int[] I32 = {0, 1, -1, 2, 3, 4, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
            4095, 4096, 4097, 127, 128, 129, 255, 256, 1 << 20, (1 << 20) + 1, 2 << 20, 1 << 30, 0x7fffffff, 0x80000000,
            0x7ffffffe, 0xfffffffe, 0x11223344, 0x5145564d, 3, 5, 6};
    private static final long[] I64 = {0, 1, -1, Long.MAX_VALUE, Long.MIN_VALUE, 1L << 60, 1L << 32, 1L << 40, 0xfffL,
            0x1000, 0x10, 0x200, 0x04, 0x22, 0x28, 0x08, 0x02, 0x20, 0x01, 0x40, 0x80, 0x100, 0x400, 0x800,
            0x7ffffffffffff000L, 0xfffffffffffff000L, (1L << 20) | 0x28, (16L << 20) | 0x04, (64L << 30) | 0x04};

    /** Protocol tokens: magics, record types, RAM flag words, COLO messages, a vmdesc start. */
    private static final byte[][] TOKENS = {
            hex("5145564d00000003"), hex("11223344"), hex("1122334400000001"), hex("00000001"), hex("00000003"),
            hex("0000000000000010"), hex("0000000000000200"), hex("0000000000000004"), hex("0000000000001022"),
            hex("0000000000001028"), hex("0000000000000002"), hex("0000000000000008"), hex("0000000000000020"),
            hex("7e00000002"), hex("7e00000001"), hex("7e00000000"), hex("0200000002"), hex("0300000001"),
            hex("0100000002037261 6d0000000000000004"), hex("0400000000057469 6d65720000000000000002"),
            hex("00060000000 27b7d"), hex("0006000000"), hex("00"), hex("06"), hex("07"), hex("08"), hex("05"),
            hex("0800020004"), hex("0800010000"), hex("0800080000"), hex("08000b0000"), hex("0800030000"),
            hex("00000000"), hex("00000001"), hex("00000002"), hex("00000003"), hex("00000004"), hex("00000005"),
            hex("00000006"), hex("00000007"), hex("0000000000000000"), hex("ffffffffffffffff"), hex("037261 6d"),
            hex("7b22646576696365 73223a5b5d7d")};

    private static byte[] hex(String s) {
        s = s.replace(" ", "");
        if ((s.length() & 1) == 1) {
            s = s + "0";
        }
        return java.util.HexFormat.of().parseHex(s);
    }

    /** Applies 1-6 stacked mutations; {@code other} is a splice partner (may be the same input). */
    public byte[] mutate(byte[] in, byte[] other) {
        byte[] b = in;
        int n = 1 + (r.nextInt(4) == 0 ? r.nextInt(6) : r.nextInt(2));
        for (int i = 0; i < n; i++) {
            b = once(b, other);
        }
        return b;
    }

    public byte[] once(byte[] b, byte[] other) {
        int op = r.nextInt(16);
        if (b.length == 0 && op != 5 && op != 9 && op != 12) {
            op = 5;
        }
        switch (op) {
            case 0 -> { // bit flip
                b = b.clone();
                int p = r.nextInt(b.length);
                b[p] ^= (byte) (1 << r.nextInt(8));
            }
            case 1 -> { // interesting byte
                b = b.clone();
                b[r.nextInt(b.length)] = (byte) switch (r.nextInt(6)) {
                    case 0 -> 0;
                    case 1 -> 0xff;
                    case 2 -> 0x7f;
                    case 3 -> 0x80;
                    case 4 -> 1;
                    default -> r.nextInt(256);
                };
            }
            case 2 -> b = put(b, 2, interesting32() & 0xffff);
            case 3, 13 -> b = put(b, 4, interesting32() & 0xffffffffL);
            case 4 -> b = put(b, 8, interesting64());
            case 5 -> { // insert random bytes or a token
                byte[] ins = r.nextBoolean() ? TOKENS[r.nextInt(TOKENS.length)] : randomBytes(1 + r.nextInt(32));
                b = insert(b, r.nextInt(b.length + 1), ins);
            }
            case 6 -> { // delete a range
                int p = r.nextInt(b.length);
                int len = 1 + r.nextInt(Math.min(b.length - p, r.nextInt(8) == 0 ? 65536 : 16));
                b = delete(b, p, len);
            }
            case 7 -> { // duplicate a range elsewhere
                int p = r.nextInt(b.length);
                int len = 1 + r.nextInt(Math.min(b.length - p, r.nextInt(4) == 0 ? 8192 : 64));
                b = insert(b, r.nextInt(b.length + 1), Arrays.copyOfRange(b, p, p + len));
            }
            case 8 -> b = Arrays.copyOf(b, r.nextInt(b.length)); // truncation
            case 9 -> { // splice: a prefix of this, a suffix of the other
                if (other.length == 0) {
                    break;
                }
                int a = r.nextInt(b.length + 1);
                int c = r.nextInt(other.length);
                byte[] s = Arrays.copyOf(b, a + other.length - c);
                System.arraycopy(other, c, s, a, other.length - c);
                b = s;
            }
            case 10 -> b = lengthField(b);
            case 11 -> b = packetField(b);
            case 12 -> { // long repetition of a token or a chunk of the input
                byte[] unit = r.nextBoolean() || b.length == 0 ? TOKENS[r.nextInt(TOKENS.length)]
                        : chunk(b, 1 + r.nextInt(16));
                int total = Math.min(1 << 16, unit.length * (1 + r.nextInt(r.nextBoolean() ? 64 : 12_000)));
                byte[] rep = new byte[total];
                for (int i = 0; i < total; i++) {
                    rep[i] = unit[i % unit.length];
                }
                b = insert(b, r.nextInt(b.length + 1), rep);
            }
            case 14 -> { // overwrite a range with a constant
                b = b.clone();
                int p = r.nextInt(b.length);
                int len = 1 + r.nextInt(Math.min(b.length - p, 64));
                Arrays.fill(b, p, p + len, (byte) (r.nextBoolean() ? 0 : 0xff));
            }
            default -> { // copy a range over another (keeps the length)
                b = b.clone();
                int p = r.nextInt(b.length);
                int q = r.nextInt(b.length);
                int len = 1 + r.nextInt(Math.min(b.length - Math.max(p, q), 32));
                System.arraycopy(b, p, b, q, len);
            }
        }
        return b;
    }

    private byte[] chunk(byte[] b, int len) {
        int p = r.nextInt(b.length);
        return Arrays.copyOfRange(b, p, Math.min(b.length, p + len));
    }

    private byte[] randomBytes(int n) {
        byte[] x = new byte[n];
        for (int i = 0; i < n; i++) {
            x[i] = (byte) r.nextInt(256);
        }
        return x;
    }

    public long interesting32() {
        return switch (r.nextInt(5)) {
            case 0, 1 -> I32[r.nextInt(I32.length)];
            case 2 -> bounds.length == 0 ? r.nextInt() : (int) (bounds[r.nextInt(bounds.length)] + r.nextInt(3) - 1);
            case 3 -> r.nextInt(1 << (1 + r.nextInt(30)));
            default -> r.nextInt();
        };
    }

    public long interesting64() {
        return switch (r.nextInt(5)) {
            case 0, 1 -> I64[r.nextInt(I64.length)];
            case 2 -> bounds.length == 0 ? r.nextLong() : bounds[r.nextInt(bounds.length)] + r.nextInt(3) - 1;
            case 3 -> ((long) r.nextInt(1 << 20) << Wire.PAGE_SHIFT) | (r.nextBoolean() ? 0 : r.nextInt(0x400));
            default -> r.nextLong();
        };
    }

    /** Overwrites {@code width} big-endian bytes at a random place (the end may be cut). */
    private byte[] put(byte[] b, int width, long v) {
        b = b.clone();
        int p = r.nextInt(b.length);
        for (int i = 0; i < width && p + i < b.length; i++) {
            b[p + i] = (byte) (v >>> (8 * (width - 1 - i)));
        }
        return b;
    }

    /**
     * Finds a be32 (or u8) that could be the length of what follows it, starting at a random place,
     * and sets it to a value around its real length, the end of the input or a configured bound.
     */
    private byte[] lengthField(byte[] b) {
        if (b.length < 8) {
            return once(b, b);
        }
        int start = r.nextInt(b.length);
        boolean u8 = r.nextInt(4) == 0;
        if (!u8 && r.nextInt(3) == 0) {
            // a be32 equal to the length of everything after it (VMDESCRIPTION, a trailing blob)
            for (int p = b.length - 8; p >= 0; p--) {
                if (ByteBuffer.wrap(b).getInt(p) == b.length - p - 4) {
                    start = p;
                    break;
                }
            }
        }
        for (int k = 0; k < 4096; k++) {
            int p = (start + k) % (b.length - 4);
            long v = u8 ? b[p] & 0xff : ByteBuffer.wrap(b).getInt(p) & 0xffffffffL;
            long left = b.length - p - (u8 ? 1 : 4);
            if (v > 0 && v <= left && (u8 || v >= 2)) {
                long nv = switch (r.nextInt(10)) {
                    case 0 -> 0;
                    case 1 -> v - 1;
                    case 2 -> v + 1;
                    case 3 -> v * 2;
                    case 4 -> left + 1;
                    case 5 -> bounds.length == 0 ? 0x7fffffffL : bounds[r.nextInt(bounds.length)] + r.nextInt(3) - 1;
                    case 6 -> 0x7fffffffL;
                    case 7 -> 0xffffffffL;
                    case 8 -> 0x80000000L;
                    default -> u8 ? 255 : left;
                };
                b = b.clone();
                if (u8) {
                    b[p] = (byte) nv;
                } else {
                    ByteBuffer.wrap(b).putInt(p, (int) nv);
                }
                return b;
            }
        }
        return b;
    }

    /** Edits one field of a multifd packet header found by its magic (§3.2 offsets). */
    private byte[] packetField(byte[] b) {
        int start = r.nextInt(b.length);
        for (int k = 0; k + 4 <= b.length; k++) {
            int p = (start + k) % b.length;
            if (p + 4 <= b.length && b[p] == 0x11 && b[p + 1] == 0x22 && b[p + 2] == 0x33 && b[p + 3] == 0x44) {
                b = b.clone();
                ByteBuffer w = ByteBuffer.wrap(b);
                int f = r.nextInt(10);
                int at = switch (f) {
                    case 0 -> 4;        // version
                    case 1 -> 8;        // flags
                    case 2 -> 12;       // pages_alloc
                    case 3 -> 16;       // normal_pages
                    case 4 -> 20;       // next_packet_size
                    case 5 -> 24;       // packet_num
                    case 6 -> 32;       // zero_pages
                    case 7 -> 64 + r.nextInt(8); // ramblock name
                    default -> 320 + 8 * r.nextInt(Wire.PAGES_PER_PACKET); // an offset entry
                };
                if (p + at + 8 > b.length) {
                    return b;
                }
                switch (f) {
                    case 1 -> w.putInt(p + at, switch (r.nextInt(6)) {
                        case 0 -> 0x01;
                        case 1 -> 0x02;
                        case 2 -> 0x04;
                        case 3 -> 0x40;
                        case 4 -> 0x08 | r.nextInt(0x40);
                        default -> r.nextInt();
                    });
                    case 2, 3, 6 -> w.putInt(p + at, switch (r.nextInt(6)) {
                        case 0 -> r.nextInt(Wire.PAGES_PER_PACKET + 2);
                        case 1 -> Wire.PAGES_PER_PACKET;
                        case 2 -> Wire.PAGES_PER_PACKET + 1;
                        case 3 -> w.getInt(p + at) + (r.nextBoolean() ? 1 : -1);
                        default -> (int) interesting32();
                    });
                    case 4 -> w.putInt(p + at, switch (r.nextInt(5)) {
                        case 0 -> w.getInt(p + at) + r.nextInt(9) - 4;
                        case 1 -> 2 * Wire.MULTIFD_PACKET_SIZE + r.nextInt(3) - 1;
                        case 2 -> 0;
                        default -> (int) interesting32();
                    });
                    case 5 -> w.putLong(p + at, interesting64());
                    case 7 -> b[p + at] = (byte) (r.nextBoolean() ? 0 : r.nextInt(256));
                    default -> w.putLong(p + at, switch (r.nextInt(6)) {
                        case 0 -> w.getLong(p + at) + Wire.PAGE_SIZE;
                        case 1 -> w.getLong(p + at) | 1;
                        case 2 -> (long) r.nextInt(1 << 13) << Wire.PAGE_SHIFT;
                        case 3 -> -Wire.PAGE_SIZE;
                        default -> interesting64();
                    });
                }
                return b;
            }
        }
        return b;
    }

    static byte[] insert(byte[] b, int at, byte[] ins) {
        byte[] x = new byte[b.length + ins.length];
        System.arraycopy(b, 0, x, 0, at);
        System.arraycopy(ins, 0, x, at, ins.length);
        System.arraycopy(b, at, x, at + ins.length, b.length - at);
        return x;
    }

    static byte[] delete(byte[] b, int at, int len) {
        byte[] x = new byte[b.length - len];
        System.arraycopy(b, 0, x, 0, at);
        System.arraycopy(b, at + len, x, at, b.length - at - len);
        return x;
    }
}
