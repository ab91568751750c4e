package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.RamFlags;
import dev.multifdcolo.wire.SectionType;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.compress.PageCompressor;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Test-only builder of migration bytes: main-stream records (PROTOCOL.md §7), multifd hellos (§2)
 * and RAM packets (§3). Nothing is validated: a test writes exactly the (bad) value it means, so
 * every field can be given any value a hostile or broken peer could send.
 *
 * <p>{@link #multifd} and {@link #plain} build small, complete and valid {@code -M none}
 * migrations (one 1 MiB "ram" block) whose parts can be replaced one at a time, so a rejection
 * test changes exactly one thing in an otherwise valid stream.
 */
final class StreamBytes {
    static final String RAM = "ram";
    static final long RAM_LEN = 1L << 20;
    static final int RAM_ID = 2;
    static final int PAGE = Wire.PAGE_SIZE;
    static final String MACHINE = "none";
    /** What a 7.2 {@code -M none} source puts in its VMDESCRIPTION, trimmed to the fields we walk. */
    static final String VMDESC = "{\"page_size\": 4096, \"devices\": ["
            + "{\"name\": \"timer\", \"instance_id\": 0, \"vmsd_name\": \"timer\", \"version\": 2}, "
            + "{\"name\": \"globalstate\", \"instance_id\": 0, \"vmsd_name\": \"globalstate\", \"version\": 1}]}";

    private ByteBuffer buf = ByteBuffer.allocate(256);

    // ------------------------------------------------------------------ primitives (§7.1)

    private StreamBytes room(int n) {
        if (buf.remaining() < n) {
            ByteBuffer bigger = ByteBuffer.allocate(Math.max(buf.capacity() * 2, buf.position() + n));
            buf.flip();
            bigger.put(buf);
            buf = bigger;
        }
        return this;
    }

    StreamBytes u8(int v) {
        room(1).buf.put((byte) v);
        return this;
    }

    StreamBytes be16(int v) {
        room(2).buf.putShort((short) v);
        return this;
    }

    StreamBytes be32(int v) {
        room(4).buf.putInt(v);
        return this;
    }

    StreamBytes be64(long v) {
        room(8).buf.putLong(v);
        return this;
    }

    StreamBytes bytes(byte[] b) {
        room(b.length).buf.put(b);
        return this;
    }

    /** Counted string: u8 length + bytes, no NUL. */
    StreamBytes counted(String s) {
        byte[] b = s.getBytes(StandardCharsets.ISO_8859_1);
        if (b.length > 255) {
            throw new IllegalArgumentException("counted string longer than 255 bytes");
        }
        return u8(b.length).bytes(b);
    }

    int size() {
        return buf.position();
    }

    byte[] toBytes() {
        return Arrays.copyOf(buf.array(), buf.position());
    }

    // ------------------------------------------------------------------ header, configuration (§7.2, §7.3)

    /** QEVM, version 3. */
    StreamBytes header() {
        return be32(Wire.QEVM_MAGIC).be32(Wire.STREAM_VERSION);
    }

    /** CONFIGURATION with a machine name and no subsections. */
    StreamBytes configuration(String machine) {
        byte[] b = machine.getBytes(StandardCharsets.ISO_8859_1);
        return u8(SectionType.CONFIGURATION).be32(b.length).bytes(b);
    }

    /** A configuration subsection header: 0x05, counted name, be32 version (the body follows). */
    StreamBytes subsection(String name, int version) {
        return u8(SectionType.SUBSECTION).counted(name).be32(version);
    }

    // ------------------------------------------------------------------ section records (§7.4)

    StreamBytes start(int id, String idstr, int instance, int version) {
        return u8(SectionType.START).be32(id).counted(idstr).be32(instance).be32(version);
    }

    StreamBytes full(int id, String idstr, int instance, int version) {
        return u8(SectionType.FULL).be32(id).counted(idstr).be32(instance).be32(version);
    }

    StreamBytes part(int id) {
        return u8(SectionType.PART).be32(id);
    }

    StreamBytes end(int id) {
        return u8(SectionType.END).be32(id);
    }

    StreamBytes footer(int id) {
        return u8(SectionType.FOOTER).be32(id);
    }

    StreamBytes eof() {
        return u8(SectionType.EOF);
    }

    /** COMMAND: be16 id, be16 length, data. */
    StreamBytes command(int id, byte[] data) {
        return u8(SectionType.COMMAND).be16(id).be16(data.length).bytes(data);
    }

    StreamBytes vmdesc(String json) {
        byte[] b = json.getBytes(StandardCharsets.UTF_8);
        return u8(SectionType.VMDESCRIPTION).be32(b.length).bytes(b);
    }

    // ------------------------------------------------------------------ RAM records (§7.5)

    /** A raw RAM header word: offset | flags. */
    StreamBytes ramWord(long offset, int flags) {
        return be64(offset | flags);
    }

    /** MEM_SIZE header word announcing {@code total} bytes; the block list follows. */
    StreamBytes memSize(long total) {
        return ramWord(total, RamFlags.MEM_SIZE);
    }

    /** One entry of the MEM_SIZE list. */
    StreamBytes block(String name, long usedLength) {
        return counted(name).be64(usedLength);
    }

    /** ZERO record with fill 0; {@code block == null} means CONTINUE (no name). */
    StreamBytes zero(String block, long offset) {
        return zero(block, offset, 0);
    }

    StreamBytes zero(String block, long offset, int fill) {
        if (block == null) {
            return ramWord(offset, RamFlags.ZERO | RamFlags.CONTINUE).u8(fill);
        }
        return ramWord(offset, RamFlags.ZERO).counted(block).u8(fill);
    }

    /** PAGE record; {@code block == null} means CONTINUE. */
    StreamBytes page(String block, long offset, byte[] data) {
        if (data.length != PAGE) {
            throw new IllegalArgumentException("a page is " + PAGE + " bytes");
        }
        if (block == null) {
            return ramWord(offset, RamFlags.PAGE | RamFlags.CONTINUE).bytes(data);
        }
        return ramWord(offset, RamFlags.PAGE).counted(block).bytes(data);
    }

    StreamBytes eos() {
        return be64(RamFlags.EOS);
    }

    StreamBytes multifdFlush() {
        return be64(RamFlags.MULTIFD_FLUSH);
    }

    // ------------------------------------------------------------------ pieces of a valid -M none stream

    /** Header and CONFIGURATION "none". */
    static StreamBytes prefix() {
        return new StreamBytes().header().configuration(MACHINE);
    }

    /** The RAM setup section: START "ram", MEM_SIZE with one 1 MiB block, [MULTIFD_FLUSH], EOS, footer. */
    StreamBytes ramSetup(boolean flush) {
        start(RAM_ID, RAM, 0, Wire.RAM_SECTION_VERSION).memSize(RAM_LEN).block(RAM, RAM_LEN);
        if (flush) {
            multifdFlush();
        }
        return eos().footer(RAM_ID);
    }

    /** The device sections of a 7.2 {@code -M none} source, EOF and the VMDESCRIPTION trailer. */
    StreamBytes devicesAndEnd() {
        full(0, "timer", 0, 2).bytes(new byte[24]).footer(0);
        byte[] run = new byte[100];
        byte[] name = "running".getBytes(StandardCharsets.ISO_8859_1);
        System.arraycopy(name, 0, run, 0, name.length);
        full(4, "globalstate", 0, 1).be32(name.length + 1).bytes(run).footer(4);
        return eof().vmdesc(VMDESC);
    }

    /** A page whose bytes say where it belongs (never all zero). */
    static byte[] pattern(long offset) {
        byte[] p = new byte[PAGE];
        for (int i = 0; i < PAGE; i++) {
            p[i] = (byte) (offset / PAGE * 31 + i * 7 + 1);
        }
        return p;
    }

    static byte[] cat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        byte[] out = new byte[n];
        int at = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }

    // ------------------------------------------------------------------ multifd (§2, §3)

    static byte[] hello(int channelId) {
        return hello(Wire.MULTIFD_MAGIC, Wire.MULTIFD_VERSION, new byte[16], channelId);
    }

    /** A 64-byte hello with any field values. */
    static byte[] hello(int magic, int version, byte[] uuid, int channelId) {
        ByteBuffer b = ByteBuffer.allocate(Wire.HELLO_LEN);
        b.putInt(magic).putInt(version).put(uuid).put((byte) channelId);
        return b.array();
    }

    /**
     * One multifd RAM packet with any field values: the full 1344-byte header (§12.1), then
     * {@link #payload} verbatim. Fields default to a valid page-less packet.
     */
    static final class Packet {
        int magic = Wire.MULTIFD_MAGIC;
        int version = Wire.MULTIFD_VERSION;
        int flags;
        int pagesAlloc = Wire.PAGES_PER_PACKET;
        int normal;
        int zero;
        int nextPacketSize;
        long packetNum;
        byte[] ramblock = RAM.getBytes(StandardCharsets.ISO_8859_1);
        long[] offsets = new long[Wire.PAGES_PER_PACKET];
        byte[] payload = new byte[0];

        Packet flags(int f) {
            flags = f;
            return this;
        }

        byte[] bytes() {
            ByteBuffer b = ByteBuffer.allocate(Wire.PACKET_HEADER_LEN + payload.length);
            b.putInt(magic).putInt(version).putInt(flags).putInt(pagesAlloc).putInt(normal).putInt(nextPacketSize)
                    .putLong(packetNum).putInt(zero);
            b.position(64);
            b.put(ramblock, 0, Math.min(ramblock.length, 256));
            b.position(320);
            for (long o : offsets) {
                b.putLong(o);
            }
            b.put(payload);
            return b.array();
        }
    }

    /** A SYNC packet (newest style: no pages, next_packet_size 0). */
    static Packet sync(long num) {
        Packet p = new Packet();
        p.flags = 0x01;
        p.packetNum = num;
        return p;
    }

    /** A packet carrying {@code normal} pages at {@code offsets} with their pattern bytes, uncompressed. */
    static Packet data(long num, long... offsets) {
        Packet p = new Packet();
        p.packetNum = num;
        p.normal = offsets.length;
        System.arraycopy(offsets, 0, p.offsets, 0, offsets.length);
        p.payload = pages(offsets);
        p.nextPacketSize = p.payload.length;
        return p;
    }

    static byte[] pages(long... offsets) {
        byte[] all = new byte[offsets.length * PAGE];
        for (int i = 0; i < offsets.length; i++) {
            System.arraycopy(pattern(offsets[i]), 0, all, i * PAGE, PAGE);
        }
        return all;
    }

    // ------------------------------------------------------------------ complete migrations

    /**
     * A complete migration: the main stream and each channel as a list of parts (channel part 0 =
     * the hello, then one part per packet), plus the RAM the receiver must end up with.
     */
    record Migration(List<byte[]> mainParts, List<List<byte[]>> channelParts, Compression compression, FlushMode flush,
                     byte[] ram) {

        byte[] main() {
            return cat(mainParts.toArray(byte[][]::new));
        }

        List<byte[]> channels() {
            return channelParts.stream().map(l -> cat(l.toArray(byte[][]::new))).toList();
        }

        int channelCount() {
            return channelParts.size();
        }

        /** The same migration with main part {@code index} replaced. */
        Migration withMainPart(int index, byte[] bytes) {
            List<byte[]> m = new ArrayList<>(mainParts);
            m.set(index, bytes);
            return new Migration(m, channelParts, compression, flush, ram);
        }

        /** The same migration with part {@code index} of channel {@code ch} replaced. */
        Migration withChannelPart(int ch, int index, byte[] bytes) {
            List<List<byte[]>> all = new ArrayList<>(channelParts);
            List<byte[]> c = new ArrayList<>(all.get(ch));
            c.set(index, bytes);
            all.set(ch, c);
            return new Migration(mainParts, all, compression, flush, ram);
        }

        /** The same migration with {@code bytes} inserted before part {@code index} of channel {@code ch}. */
        Migration withChannelInsert(int ch, int index, byte[] bytes) {
            List<List<byte[]>> all = new ArrayList<>(channelParts);
            List<byte[]> c = new ArrayList<>(all.get(ch));
            c.add(index, bytes);
            all.set(ch, c);
            return new Migration(mainParts, all, compression, flush, ram);
        }

        /** The same migration with channel {@code ch} cut to its first {@code parts} parts. */
        Migration withChannelCut(int ch, int parts) {
            List<List<byte[]>> all = new ArrayList<>(channelParts);
            all.set(ch, new ArrayList<>(all.get(ch).subList(0, parts)));
            return new Migration(mainParts, all, compression, flush, ram);
        }
    }

    /** Index of the main part holding the RAM PART section (in both builders). */
    static final int MAIN_PART = 1;
    /** Index of the channel part holding the data packet (in {@link #multifd}). */
    static final int CHANNEL_DATA = 2;

    /**
     * Plain precopy: setup, one PART with PAGE and ZERO records (named and CONTINUE), END with one
     * more page, devices. Main parts: 0 prefix+setup, 1 PART, 2 END, 3 devices+EOF+vmdesc.
     */
    static Migration plain() {
        byte[] ram = new byte[(int) RAM_LEN];
        StreamBytes part = new StreamBytes().part(RAM_ID)
                .page(RAM, 0x1000, pattern(0x1000)).page(null, 0x2000, pattern(0x2000)).zero(null, 0x3000)
                .zero(RAM, 0x4000).eos().footer(RAM_ID);
        StreamBytes end = new StreamBytes().end(RAM_ID).page(null, 0x5000, pattern(0x5000)).eos().footer(RAM_ID);
        for (long o : new long[]{0x1000, 0x2000, 0x5000}) {
            System.arraycopy(pattern(o), 0, ram, (int) o, PAGE);
        }
        return new Migration(List.of(prefix().ramSetup(false).toBytes(), part.toBytes(), end.toBytes(),
                new StreamBytes().devicesAndEnd().toBytes()), List.of(), Compression.NONE, FlushMode.LEGACY, ram);
    }

    /**
     * Multifd precopy with {@code n} channels. Main: setup, one PART with a ZERO record, END,
     * devices (parts 0..3 as in {@link #plain}). Channel i: part 0 hello(i), part 1 SYNC (setup),
     * part 2 a data packet with two pages at {@code 0x10000 * (i + 1)} and {@code + 0x3000}, then
     * SYNCs: legacy mode pairs one SYNC with every EOS (3 per channel), modern mode one with every
     * MULTIFD_FLUSH (setup and PART: 2 per channel).
     */
    static Migration multifd(int n, FlushMode mode, Compression compression) {
        boolean modern = mode == FlushMode.MODERN;
        byte[] ram = new byte[(int) RAM_LEN];
        StreamBytes part = new StreamBytes().part(RAM_ID).zero(RAM, 0);
        if (modern) {
            part.multifdFlush();
        }
        part.eos().footer(RAM_ID);
        List<byte[]> main = List.of(prefix().ramSetup(modern).toBytes(), part.toBytes(),
                new StreamBytes().end(RAM_ID).eos().footer(RAM_ID).toBytes(), new StreamBytes().devicesAndEnd().toBytes());
        List<List<byte[]>> channels = new ArrayList<>();
        long num = 0;
        for (int i = 0; i < n; i++) {
            long a = 0x10000L * (i + 1);
            long[] offs = {a, a + 0x3000};
            for (long o : offs) {
                System.arraycopy(pattern(o), 0, ram, (int) o, PAGE);
            }
            Packet data = data(num + 1, offs);
            if (compression != Compression.NONE) {
                data.flags = compression.flagBits;
                data.payload = compress(compression, data.payload);
                data.nextPacketSize = data.payload.length;
            }
            List<byte[]> c = new ArrayList<>(List.of(hello(i), sync(num).bytes(), data.bytes(), sync(num + 2).bytes()));
            if (!modern) {
                c.add(sync(num + 3).bytes());
            }
            num += 4;
            channels.add(c);
        }
        return new Migration(main, channels, compression, modern ? FlushMode.MODERN : FlushMode.LEGACY, ram);
    }

    /** The first packet of a fresh zlib/zstd channel stream holding {@code pages}. */
    static byte[] compress(Compression c, byte[] pages) {
        try (PageCompressor pc = PageCompressor.create(c, PageCompressor.DEFAULT_LEVEL)) {
            ByteBuffer out = ByteBuffer.allocate(PageCompressor.maxCompressedSize(c, pages.length));
            int n = pc.compress(ByteBuffer.wrap(pages), out);
            return Arrays.copyOf(out.array(), n);
        }
    }
}
