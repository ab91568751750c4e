package dev.multifdcolo.primary;

import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.RamFlags;
import dev.multifdcolo.wire.Wire;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.IntConsumer;

/**
 * A strict, test-only decoder of what a sender puts on the wire (main stream and multifd
 * channels), independent of the encoders, and a RAM rebuild that honours the sync epochs.
 * Written from PROTOCOL.md; used to check our sender and to cross-check the real captures.
 */
final class StreamDecoder {
    private StreamDecoder() {}

    /** A ZERO or PAGE record of the main channel. */
    record MainPage(int epoch, String block, long offset, boolean zero, byte[] data) {}

    static final class MainStream {
        String machine;
        final List<String> events = new ArrayList<>();
        final LinkedHashMap<String, Long> blocks = new LinkedHashMap<>();
        final List<MainPage> pages = new ArrayList<>();
        final List<Integer> commands = new ArrayList<>();
        int barriers;
        int flushRecords;
        int eosRecords;
        byte[] timer;
        byte[] globalstate;
        String vmdesc;
        boolean returnPath;

        String runState() {
            int n = 0;
            while (globalstate[4 + n] != 0) {
                n++;
            }
            return new String(globalstate, 4, n, StandardCharsets.US_ASCII);
        }
    }

    /** One multifd packet. */
    record Packet(int epoch, int flags, int pagesAlloc, int normal, int zero, int nextSize, long num, String block,
                  long[] normalOffsets, long[] zeroOffsets, byte[] payload, byte[] header) {
        boolean sync() {
            return (flags & MultifdPacket.FLAG_SYNC) != 0;
        }
    }

    static final class ChannelStream {
        int id;
        byte[] uuid;
        final List<Packet> packets = new ArrayList<>();

        int syncs() {
            return (int) packets.stream().filter(Packet::sync).count();
        }
    }

    /** Decodes a whole main stream. */
    static MainStream decodeMain(byte[] bytes, Framing framing) throws IOException {
        return decodeMain(new ByteArrayInputStream(bytes), framing, null);
    }

    /**
     * Decodes a main stream as it arrives, up to and including the vmdesc trailer.
     *
     * @param onPing called with the value of every PING command (may be null)
     */
    static MainStream decodeMain(InputStream raw, Framing framing, IntConsumer onPing) throws IOException {
        DataInputStream in = new DataInputStream(raw);
        MainStream m = new MainStream();
        check(in.readInt() == Wire.QEVM_MAGIC, "magic");
        check(in.readInt() == Wire.STREAM_VERSION, "version");
        check(in.readUnsignedByte() == 0x07, "configuration");
        byte[] name = new byte[in.readInt()];
        in.readFully(name);
        m.machine = new String(name, StandardCharsets.ISO_8859_1);
        Map<Integer, String> sections = new LinkedHashMap<>();
        String[] current = {null};
        int t = in.readUnsignedByte();
        check(t != 0x05, "configuration subsections are not expected");
        while (true) {
            switch (t) {
                case 0x00 -> {
                    m.events.add("EOF");
                    check(in.readUnsignedByte() == 0x06, "VMDESCRIPTION after EOF");
                    byte[] json = new byte[in.readInt()];
                    in.readFully(json);
                    m.vmdesc = new String(json, StandardCharsets.UTF_8);
                    m.events.add("VMDESC");
                    return m;
                }
                case 0x01, 0x04 -> {
                    int id = in.readInt();
                    String idstr = cstr(in);
                    int inst = in.readInt();
                    int ver = in.readInt();
                    sections.put(id, idstr);
                    m.events.add((t == 1 ? "START " : "FULL ") + id + " " + idstr + " " + inst + " v" + ver);
                    if (idstr.equals("ram")) {
                        check(t == 1 && ver == 4, "ram is START v4");
                        ram(in, m, framing, current);
                    } else if (idstr.equals("timer")) {
                        check(ver == 2, "timer v2");
                        m.timer = new byte[24];
                        in.readFully(m.timer);
                    } else if (idstr.equals("globalstate")) {
                        check(ver == 1, "globalstate v1");
                        m.globalstate = new byte[104];
                        in.readFully(m.globalstate);
                    } else {
                        throw new IOException("unknown section " + idstr);
                    }
                    check(in.readUnsignedByte() == 0x7e && in.readInt() == id, "footer of " + idstr);
                }
                case 0x02, 0x03 -> {
                    int id = in.readInt();
                    check("ram".equals(sections.get(id)), "PART/END for ram");
                    m.events.add((t == 2 ? "PART " : "END ") + id);
                    ram(in, m, framing, current);
                    check(in.readUnsignedByte() == 0x7e && in.readInt() == id, "ram footer");
                }
                case 0x08 -> {
                    int cmd = in.readUnsignedShort();
                    int len = in.readUnsignedShort();
                    byte[] data = new byte[len];
                    in.readFully(data);
                    m.commands.add(cmd);
                    m.events.add("CMD " + cmd);
                    if (cmd == 1) {
                        m.returnPath = true;
                    } else if (cmd == 2) {
                        check(len == 4, "PING length");
                        if (onPing != null) {
                            onPing.accept(ByteBuffer.wrap(data).getInt());
                        }
                    }
                }
                default -> throw new IOException("unknown section type 0x" + Integer.toHexString(t));
            }
            t = in.readUnsignedByte();
        }
    }

    private static void ram(DataInputStream in, MainStream m, Framing framing, String[] current) throws IOException {
        while (true) {
            long w = in.readLong();
            int flags = (int) (w & (Wire.PAGE_SIZE - 1));
            long off = w & ~(long) (Wire.PAGE_SIZE - 1);
            int kind = flags & ~RamFlags.CONTINUE;
            if (kind == RamFlags.ZERO || kind == RamFlags.PAGE) {
                String block;
                if ((flags & RamFlags.CONTINUE) != 0) {
                    check(current[0] != null, "CONTINUE without a block");
                    block = current[0];
                } else {
                    block = cstr(in);
                    current[0] = block;
                }
                Long len = m.blocks.get(block);
                check(len != null && off + Wire.PAGE_SIZE <= len, "page inside a known block");
                if (kind == RamFlags.ZERO) {
                    check(in.readUnsignedByte() == 0, "ZERO fill 0");
                    m.pages.add(new MainPage(m.barriers, block, off, true, null));
                } else {
                    byte[] data = new byte[Wire.PAGE_SIZE];
                    in.readFully(data);
                    m.pages.add(new MainPage(m.barriers, block, off, false, data));
                }
                continue;
            }
            check((flags & RamFlags.CONTINUE) == 0, "CONTINUE only on pages");
            switch (kind) {
                case RamFlags.MEM_SIZE -> {
                    check(m.blocks.isEmpty(), "one MEM_SIZE");
                    long total = off;
                    while (total > 0) {
                        String name = cstr(in);
                        long used = in.readLong();
                        check(used > 0 && used <= total, "block length");
                        m.blocks.put(name, used);
                        total -= used;
                    }
                    m.events.add("MEM_SIZE " + m.blocks);
                }
                case RamFlags.MULTIFD_FLUSH -> {
                    check(w == RamFlags.MULTIFD_FLUSH, "bare MULTIFD_FLUSH");
                    m.flushRecords++;
                    m.events.add("FLUSH");
                    if (framing == Framing.MODERN) {
                        m.barriers++;
                    }
                }
                case RamFlags.EOS -> {
                    check(w == RamFlags.EOS, "bare EOS");
                    m.eosRecords++;
                    m.events.add("EOS");
                    if (framing == Framing.LEGACY) {
                        m.barriers++;
                    }
                    return;
                }
                default -> throw new IOException("unexpected RAM flags 0x" + Integer.toHexString(flags));
            }
        }
    }

    /**
     * Decodes one multifd connection: 64-byte hello, then packets to EOF.
     *
     * @param decompress turns (payload, normal pages) into normal × PAGE bytes for compressed
     *                   channels; null for compression none
     */
    static ChannelStream decodeChannel(byte[] bytes, Framing framing, Decompress decompress) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(bytes);
        ChannelStream c = new ChannelStream();
        check(b.remaining() >= 64 && b.getInt(0) == Wire.MULTIFD_MAGIC && b.getInt(4) == 1, "hello");
        c.uuid = Arrays.copyOfRange(bytes, 8, 24);
        c.id = bytes[24] & 0xff;
        for (int i = 25; i < 64; i++) {
            check(bytes[i] == 0, "hello reserved bytes");
        }
        b.position(64);
        int epoch = 0;
        MultifdPacket p = new MultifdPacket();
        while (b.hasRemaining()) {
            if (b.remaining() < Wire.PACKET_HEADER_LEN) {
                throw new EOFException("truncated packet header");
            }
            byte[] header = new byte[Wire.PACKET_HEADER_LEN];
            b.get(b.position(), header);
            p.wrap(b);
            check(p.magic() == Wire.MULTIFD_MAGIC && p.version() == 1, "packet magic/version");
            check((p.flags() & MultifdPacket.FLAG_DEVICE_STATE) == 0, "no device-state packets");
            int normal = p.normalPages();
            int zero = framing == Framing.MODERN ? p.zeroPages() : 0;
            check(p.pagesAlloc() >= 0 && p.pagesAlloc() <= Wire.PAGES_PER_PACKET, "pages_alloc");
            check(normal >= 0 && zero >= 0 && normal + zero <= p.pagesAlloc(), "page counts");
            String block = p.ramblock();
            long[] no = new long[normal];
            long[] zo = new long[zero];
            for (int i = 0; i < normal; i++) {
                no[i] = p.offset(i);
            }
            for (int i = 0; i < zero; i++) {
                zo[i] = p.offset(normal + i);
            }
            int flags = p.flags();
            int nextSize = p.nextPacketSize();
            long num = p.packetNum();
            int alloc = p.pagesAlloc();
            b.position(b.position() + Wire.PACKET_HEADER_LEN);
            byte[] payload = null;
            if (normal > 0) {
                int len = decompress == null ? normal * Wire.PAGE_SIZE : nextSize;
                payload = new byte[len];
                b.get(payload);
                if (decompress != null) {
                    payload = decompress.apply(c.id, payload, normal);
                }
            }
            c.packets.add(new Packet(epoch, flags, alloc, normal, zero, nextSize, num, block, no, zo, payload, header));
            if ((flags & MultifdPacket.FLAG_SYNC) != 0) {
                epoch++;
            }
        }
        return c;
    }

    @FunctionalInterface
    interface Decompress {
        byte[] apply(int channel, byte[] compressed, int normalPages) throws IOException;
    }

    /**
     * Rebuilds every block from the streams: epoch by epoch, the main channel's records in order,
     * then every channel's packets of that epoch. With multifd, a page appearing twice within one
     * epoch is an error (the barrier would not order the two copies).
     */
    static Map<String, byte[]> rebuild(MainStream m, List<ChannelStream> channels) throws IOException {
        Map<String, byte[]> img = new LinkedHashMap<>();
        for (Map.Entry<String, Long> e : m.blocks.entrySet()) {
            img.put(e.getKey(), new byte[Math.toIntExact(e.getValue())]);
        }
        int maxEpoch = m.barriers;
        for (ChannelStream c : channels) {
            check(c.syncs() == m.barriers, "channel " + c.id + " has " + c.syncs() + " SYNCs, main has "
                    + m.barriers + " barriers");
        }
        boolean strict = !channels.isEmpty();
        for (int e = 0; e <= maxEpoch; e++) {
            Set<String> seen = new HashSet<>();
            for (MainPage p : m.pages) {
                if (p.epoch() != e) {
                    continue;
                }
                check(!strict || seen.add(p.block() + "@" + p.offset()), "page twice in one epoch: " + p.offset());
                byte[] dst = img.get(p.block());
                if (p.zero()) {
                    Arrays.fill(dst, (int) p.offset(), (int) p.offset() + Wire.PAGE_SIZE, (byte) 0);
                } else {
                    System.arraycopy(p.data(), 0, dst, (int) p.offset(), Wire.PAGE_SIZE);
                }
            }
            for (ChannelStream c : channels) {
                for (Packet p : c.packets) {
                    if (p.epoch() != e || p.normal() + p.zero() == 0) {
                        continue;
                    }
                    byte[] dst = img.get(p.block());
                    check(dst != null, "packet block " + p.block());
                    for (int i = 0; i < p.normal(); i++) {
                        long off = p.normalOffsets()[i];
                        check(off % Wire.PAGE_SIZE == 0 && off + Wire.PAGE_SIZE <= dst.length, "offset");
                        check(seen.add(p.block() + "@" + off), "page twice in one epoch: " + off);
                        System.arraycopy(p.payload(), i * Wire.PAGE_SIZE, dst, (int) off, Wire.PAGE_SIZE);
                    }
                    for (long off : p.zeroOffsets()) {
                        check(seen.add(p.block() + "@" + off), "page twice in one epoch: " + off);
                        Arrays.fill(dst, (int) off, (int) off + Wire.PAGE_SIZE, (byte) 0);
                    }
                }
            }
        }
        return img;
    }

    private static String cstr(DataInputStream in) throws IOException {
        byte[] b = new byte[in.readUnsignedByte()];
        in.readFully(b);
        return new String(b, StandardCharsets.ISO_8859_1);
    }

    static void check(boolean ok, String what) throws IOException {
        if (!ok) {
            throw new IOException("stream check failed: " + what);
        }
    }
}
