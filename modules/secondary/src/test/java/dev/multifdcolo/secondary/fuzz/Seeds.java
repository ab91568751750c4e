package dev.multifdcolo.secondary.fuzz;

import dev.multifdcolo.secondary.Captures;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.ColoMessage;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.compress.PageCompressor;
import dev.multifdcolo.wire.encode.NoneMachine;
import dev.multifdcolo.wire.encode.PacketWriter;
import dev.multifdcolo.wire.encode.StreamWriter;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Valid inputs the fuzzer mutates: migrations written by our own encoders ({@link StreamWriter},
 * {@link PacketWriter}, {@link PageCompressor}) in several shapes, and the real QEMU captures.
 */
public final class Seeds {
    private Seeds() {}

    /**
     * One valid migration.
     *
     * @param precopyEnd         end of the precopy (after the VMDESCRIPTION) in the main stream: a COLO
     *                           primary sends nothing more until the secondary's READY
     * @param coloMainPrefix     COLO seeds: bytes of the main stream up to the end of checkpoint 1
     *                           (mutations go after it); -1 for precopy seeds
     * @param coloChannelPrefix  the same for each channel (its hello, precopy and checkpoint-1 packets)
     */
    public record Seed(String name, byte[] main, List<byte[]> channels, Compression compression, FlushMode flush,
                       boolean colo, int precopyEnd, int coloMainPrefix, int[] coloChannelPrefix, long ramBytes) {
        @Override
        public String toString() {
            return name;
        }
    }

    static final String[] BLOCKS = {"ram", "pc.rom"};
    static final long[] LENGTHS = {64 * Wire.PAGE_SIZE, 8 * Wire.PAGE_SIZE};

    /** Our encoders' shapes: framing x channels x compression, precopy only or COLO with checkpoints. */
    public static List<Seed> generated() {
        List<Seed> l = new ArrayList<>();
        long s = 1;
        for (Framing f : Framing.values()) {
            l.add(generate(f, 0, Compression.NONE, 0, false, s++));
            l.add(generate(f, 0, Compression.NONE, 0, true, s++));
            l.add(generate(f, 1, Compression.NONE, 0, false, s++));
            l.add(generate(f, 2, Compression.NONE, 0, f == Framing.MODERN, s++));
            l.add(generate(f, 3, Compression.NONE, 0, false, s++));
            l.add(generate(f, 2, Compression.ZLIB, 0, false, s++));
            l.add(generate(f, 2, Compression.ZSTD, 0, false, s++));
        }
        // EOF right after the RAM END section: the VMDESCRIPTION is read by its length (§7.7)
        Seed bare = generate(Framing.LEGACY, 0, Compression.NONE, 0, false, s);
        l.add(new Seed(bare.name() + " without devices", withoutDevices(bare.main()), List.of(), Compression.NONE,
                FlushMode.LEGACY, false, -1, -1, null, bare.ramBytes()));
        return l;
    }

    public static List<Seed> generatedColo() {
        List<Seed> l = new ArrayList<>();
        long s = 100;
        for (Framing f : Framing.values()) {
            l.add(generate(f, 0, Compression.NONE, 3, f == Framing.MODERN, s++));
            l.add(generate(f, 2, Compression.NONE, 3, f == Framing.MODERN, s++));
            l.add(generate(f, 1, Compression.ZSTD, 2, f == Framing.MODERN, s++));
        }
        return l;
    }

    /** The precopy captures of real QEMU 7.2 and 11.1 (main + channels). */
    public static List<Seed> captures() {
        List<Seed> l = new ArrayList<>();
        for (Captures c : Captures.all()) {
            byte[] main = c.mainBytes();
            l.add(new Seed("capture " + c.name(), main, c.channelBytes(), c.compression(), c.flush(), false, main.length, -1,
                    null, 16L << 20));
        }
        return l;
    }

    /**
     * Real COLO primaries (7.2 with ENABLE_COLO, 11.1 with return path): precopy and three
     * checkpoints. The checkpoint-1 boundary is found by a clean run ({@link FuzzRig#coloBoundary}).
     */
    public static List<Seed> coloCaptures() {
        List<Seed> l = new ArrayList<>();
        // precopy ends as in ColoCaptureTest
        l.add(coloCapture("capture 7.2 colo plain", "qemu-7.2", "colo_plain_0.bin", 54030, List.of(), FlushMode.LEGACY));
        l.add(coloCapture("capture 7.2 colo multifd 2", "qemu-7.2", "colo_mf_0.bin", 37614,
                List.of("colo_mf_1.bin", "colo_mf_2.bin"), FlushMode.LEGACY));
        l.add(coloCapture("capture 11.1 colo plain", "qemu-11.1", "colo_plain_0.bin", 54381, List.of(), FlushMode.MODERN));
        l.add(coloCapture("capture 11.1 colo multifd 4", "qemu-11.1", "colo_mf4_0.bin", 1157,
                List.of("colo_mf4_1.bin", "colo_mf4_2.bin", "colo_mf4_3.bin", "colo_mf4_4.bin"), FlushMode.MODERN));
        return l;
    }

    private static Seed coloCapture(String name, String dir, String main, int precopyEnd, List<String> channels,
                                    FlushMode flush) {
        Seed raw = new Seed(name, Captures.load(dir + "/" + main),
                channels.stream().map(c -> Captures.load(dir + "/" + c)).toList(), Compression.NONE, flush, true, precopyEnd,
                -1, null, 16L << 20);
        return FuzzRig.coloBoundary(raw);
    }

    /** The same precopy with its device sections cut out (EOF and the vmdesc follow the RAM END). */
    static byte[] withoutDevices(byte[] main) {
        StreamWriter w = StreamWriter.buffered(1024);
        try {
            NoneMachine.of(NoneMachine.Flavor.QEMU_7_2).writeDeviceSections(w);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        byte[] dev = w.toByteArray();
        for (int p = 0; p + dev.length <= main.length; p++) {
            if (java.util.Arrays.equals(main, p, p + dev.length, dev, 0, dev.length)) {
                byte[] out = new byte[main.length - dev.length];
                System.arraycopy(main, 0, out, 0, p);
                System.arraycopy(main, p + dev.length, out, p, main.length - p - dev.length);
                return out;
            }
        }
        throw new IllegalStateException("device sections not found");
    }

    // ------------------------------------------------------------------ the generator

    /**
     * A complete migration like {@code MigrationSender} / {@code ColoPrimary} write it: setup
     * section (MEM_SIZE of two blocks), two PART rounds and the END round (plain: PAGE/ZERO records,
     * named and CONTINUE; multifd: packets dealt round robin, zero pages as ZERO records (legacy) or
     * in the packets (modern); a SYNC per channel and MULTIFD_FLUSH (modern) per round), device
     * sections of {@code -M none}, EOF, VMDESCRIPTION; then {@code checkpoints} COLO checkpoints.
     */
    public static Seed generate(Framing framing, int nch, Compression comp, int checkpoints, boolean returnPath, long seed) {
        try {
            return new Gen(framing, nch, comp, checkpoints, returnPath, seed).run();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static final class Gen {
        final Framing framing;
        final boolean modern;
        final int nch;
        final Compression comp;
        final int checkpoints;
        final boolean returnPath;
        final Random rnd;
        final StreamWriter w = StreamWriter.buffered(1 << 16);
        final ByteArrayOutputStream[] ch;
        final PacketWriter[] pw;
        final PageCompressor[] pc;
        final NoneMachine machine;
        final int ramId;
        long packetNum;
        int nextChannel;

        Gen(Framing framing, int nch, Compression comp, int checkpoints, boolean returnPath, long seed) {
            this.framing = framing;
            this.modern = framing == Framing.MODERN;
            this.nch = nch;
            this.comp = comp;
            this.checkpoints = checkpoints;
            this.returnPath = returnPath;
            this.rnd = new Random(seed);
            this.ch = new ByteArrayOutputStream[nch];
            this.pw = new PacketWriter[nch];
            this.pc = new PageCompressor[nch];
            this.machine = NoneMachine.of(modern ? NoneMachine.Flavor.QEMU_11_1 : NoneMachine.Flavor.QEMU_7_2);
            this.ramId = machine.ramSectionId();
            for (int i = 0; i < nch; i++) {
                ch[i] = new ByteArrayOutputStream();
                pw[i] = new PacketWriter();
                pc[i] = comp == Compression.NONE ? null : PageCompressor.create(comp, PageCompressor.DEFAULT_LEVEL);
                write(i, PacketWriter.hello(new byte[16], i));
            }
        }

        Seed run() throws IOException {
            w.header().configuration("none");
            if (returnPath) {
                // configuration subsections as newer QEMUs send them (§7.3): page bits, UUID, no capabilities
                w.u8(0x05).countedString("configuration/target-page-bits").be32(1).be32(Wire.PAGE_SHIFT);
                w.u8(0x05).countedString("configuration/uuid").be32(1).bytes(new byte[16]);
                w.u8(0x05).countedString("configuration/capabilities").be32(1).be32(0);
            }
            if (returnPath) {
                w.openReturnPath();
            }
            if (checkpoints > 0 && !modern) {
                w.enableColo();
            }
            w.sectionStart(ramId, Wire.RAM_IDSTR, 0, Wire.RAM_SECTION_VERSION).ramMemSize(BLOCKS, LENGTHS);
            endRound(false);
            if (returnPath) {
                w.ping(1);
            }
            for (int round = 0; round < 2; round++) {
                w.sectionPart(ramId);
                pages(round == 0 ? 10 : 5);
                endRound(false);
            }
            if (modern) {
                w.switchoverStart();
            }
            w.sectionEnd(ramId);
            pages(3);
            endRound(false);
            machine.writeDeviceSections(w);
            w.eof().vmdescription(machine.vmdescJson("none"));
            int precopyEnd = (int) w.totalBytes();
            int mainPrefix = -1;
            int[] chPrefix = null;
            StreamWriter blobW = StreamWriter.buffered(512);
            machine.writeDeviceSections(blobW);
            byte[] blob = blobW.eof().toByteArray();
            for (int k = 1; k <= checkpoints; k++) {
                w.be32(ColoMessage.CHECKPOINT_REQUEST.value()).be32(ColoMessage.VMSTATE_SEND.value());
                w.sectionEnd(ramId);
                pages(2 + rnd.nextInt(4));
                endRound(true);
                w.be32(ColoMessage.VMSTATE_SIZE.value()).be64(blob.length).bytes(blob);
                if (k == 1) {
                    mainPrefix = (int) w.totalBytes();
                    chPrefix = new int[nch];
                    for (int i = 0; i < nch; i++) {
                        chPrefix[i] = ch[i].size();
                    }
                }
            }
            for (PageCompressor c : pc) {
                if (c != null) {
                    c.close();
                }
            }
            List<byte[]> channels = new ArrayList<>();
            for (ByteArrayOutputStream o : ch) {
                channels.add(o.toByteArray());
            }
            String name = (modern ? "modern" : "legacy") + (nch == 0 ? " plain" : " multifd " + nch)
                    + (comp == Compression.NONE ? "" : " " + comp.qemuName()) + (returnPath ? " return-path" : "")
                    + (checkpoints > 0 ? " colo x" + checkpoints : "");
            return new Seed("ours " + name, w.toByteArray(), channels, comp, modern ? FlushMode.MODERN : FlushMode.LEGACY,
                    checkpoints > 0, precopyEnd, mainPrefix, chPrefix, LENGTHS[0] + LENGTHS[1]);
        }

        /** [multifd: SYNC on every channel, MULTIFD_FLUSH (modern)] EOS, footer [, EOF]. */
        void endRound(boolean eof) throws IOException {
            for (int i = 0; i < nch; i++) {
                // 7.2 puts its page count into a SYNC's pages_alloc, 11.1 puts 0
                write(i, pw[i].sync(packetNum++, modern ? 0 : Wire.PAGES_PER_PACKET));
            }
            if (nch > 0 && modern) {
                w.ramMultifdFlush();
            }
            w.ramEos().footer(ramId);
            if (eof) {
                w.eof();
            }
        }

        /** {@code n} dirty pages over both blocks, about a quarter of them zero. */
        void pages(int n) throws IOException {
            List<long[]> normal = new ArrayList<>();   // {block, offset}
            List<long[]> zero = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int b = rnd.nextInt(4) == 0 ? 1 : 0;
                long off = (long) rnd.nextInt((int) (LENGTHS[b] / Wire.PAGE_SIZE)) << Wire.PAGE_SHIFT;
                (rnd.nextInt(4) == 0 ? zero : normal).add(new long[]{b, off});
            }
            if (nch == 0) {
                while (!zero.isEmpty() || !normal.isEmpty()) {
                    boolean z = !zero.isEmpty() && (normal.isEmpty() || rnd.nextBoolean());
                    long[] p = z ? zero.remove(0) : normal.remove(0);
                    if (z) {
                        w.ramZero(BLOCKS[(int) p[0]], p[1]);
                    } else {
                        w.ramPage(BLOCKS[(int) p[0]], p[1], ByteBuffer.wrap(page()));
                    }
                }
                return;
            }
            if (!modern) {
                for (long[] p : zero) {
                    w.ramZero(BLOCKS[(int) p[0]], p[1]);
                }
                zero.clear();
            }
            for (int b = 0; b < BLOCKS.length; b++) {
                List<Long> nOffs = new ArrayList<>();
                List<Long> zOffs = new ArrayList<>();
                for (long[] p : normal) {
                    if (p[0] == b) {
                        nOffs.add(p[1]);
                    }
                }
                for (long[] p : zero) {
                    if (p[0] == b) {
                        zOffs.add(p[1]);
                    }
                }
                while (!nOffs.isEmpty() || !zOffs.isEmpty()) {
                    int nn = Math.min(nOffs.size(), 1 + rnd.nextInt(5));
                    int nz = Math.min(zOffs.size(), rnd.nextInt(3));
                    if (nn + nz == 0) {
                        nz = zOffs.size();
                    }
                    long[] offs = new long[nn + nz];
                    for (int i = 0; i < nn; i++) {
                        offs[i] = nOffs.remove(0);
                    }
                    for (int i = 0; i < nz; i++) {
                        offs[nn + i] = zOffs.remove(0);
                    }
                    packet(BLOCKS[b], nn, nz, offs);
                }
            }
        }

        void packet(String block, int normal, int zero, long[] offs) {
            int c = nextChannel++ % nch;
            byte[] payload = new byte[normal * Wire.PAGE_SIZE];
            for (int i = 0; i < normal; i++) {
                System.arraycopy(page(), 0, payload, i * Wire.PAGE_SIZE, Wire.PAGE_SIZE);
            }
            if (normal > 0 && pc[c] != null) {
                ByteBuffer out = ByteBuffer.allocate(PageCompressor.maxCompressedSize(comp, payload.length));
                int len = pc[c].compress(ByteBuffer.wrap(payload), out);
                payload = java.util.Arrays.copyOf(out.array(), len);
            }
            write(c, pw[c].data(comp.flagBits, normal, zero, normal == 0 ? 0 : payload.length, packetNum++,
                    PacketWriter.blockName(block), offs, 0));
            if (normal > 0) {
                ch[c].writeBytes(payload);
            }
        }

        /** A page that compresses somewhat: runs of a byte, then noise. */
        byte[] page() {
            byte[] p = new byte[Wire.PAGE_SIZE];
            int run = rnd.nextInt(Wire.PAGE_SIZE);
            java.util.Arrays.fill(p, 0, run, (byte) rnd.nextInt(256));
            for (int i = run; i < p.length; i++) {
                p[i] = (byte) rnd.nextInt(rnd.nextBoolean() ? 4 : 256);
            }
            return p;
        }

        void write(int c, ByteBuffer b) {
            byte[] a = new byte[b.remaining()];
            b.duplicate().get(a);
            ch[c].writeBytes(a);
        }
    }
}
