package dev.multifdcolo.secondary.fuzz;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.secondary.colo.PageRouter;
import dev.multifdcolo.secondary.fuzz.Fuzz.End;
import dev.multifdcolo.secondary.fuzz.FuzzRig.FuzzConfig;
import dev.multifdcolo.secondary.fuzz.FuzzRig.Outcome;
import dev.multifdcolo.secondary.fuzz.Seeds.Seed;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.secondary.stream.MultifdChannelDecoder;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.compress.PageCompressor;
import dev.multifdcolo.wire.compress.PageDecompressor;
import dev.multifdcolo.wire.encode.PacketWriter;
import net.jqwik.api.AfterFailureMode;
import net.jqwik.api.EdgeCasesMode;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.ShrinkingMode;
import net.jqwik.api.lifecycle.AddLifecycleHook;
import net.jqwik.api.lifecycle.PropagationMode;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Mutation fuzzing of every decoder (see {@link Fuzz} for what each input must satisfy). Each try
 * is one long: it picks a seed, the mutations and the read splits, so a failure names the long
 * and the input is reproduced exactly with {@code -Dfuzz.replay=<long>}.
 */
@AddLifecycleHook(value = Fuzz.Tries.class, propagateTo = PropagationMode.DIRECT_DESCENDANTS)
class DecoderFuzzTest {
    static final FuzzRig.Limits L = FuzzRig.LIMITS;

    /** Precopy seeds; our small ones eight times, so they get most of the inputs (they are fast). */
    static final List<Seed> PRECOPY;
    static final List<Seed> MULTIFD;
    static final List<Seed> COLO;

    static {
        List<Seed> gen = Seeds.generated();
        List<Seed> caps = Seeds.captures();
        List<Seed> p = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            p.addAll(gen);
        }
        p.addAll(caps);
        p.addAll(Seeds.generatedColo());    // a non-COLO replica: 7.2's ENABLE_COLO is refused
        PRECOPY = List.copyOf(p);
        MULTIFD = PRECOPY.stream().filter(s -> !s.channels().isEmpty()).toList();
        List<Seed> c = new ArrayList<>();
        List<Seed> genColo = Seeds.generatedColo();
        for (int i = 0; i < 6; i++) {
            c.addAll(genColo);
        }
        c.addAll(Seeds.coloCaptures());
        COLO = List.copyOf(c);
    }

    /**
     * Heap a decoding run may allocate: fixed decoder state, the configured bounds (device state
     * kept verbatim and grown by doubling, the vmdesc and its JSON parse, the COLO blob), and a
     * small multiple of the input for per-record objects (block names, buffer views).
     */
    static long sessionBound(long inputBytes, long reads) {
        return (1L << 20) + 4 * L.maxDeviceState() + 16L * L.maxVmdesc() + 2 * L.maxBlob() + 8 * inputBytes + 256 * reads;
    }

    static long total(byte[] main, List<byte[]> ch) {
        long n = main.length;
        for (byte[] c : ch) {
            n += c.length;
        }
        return n;
    }

    static long reads(Reads m, Reads[] c) {
        long n = m.count();
        for (Reads r : c) {
            n += r.count();
        }
        return n;
    }

    /** Mostly {@link FuzzRig#LIMITS}; one input in 16 with less RAM allowed than the seed announces. */
    static FuzzRig.Limits limits(Seed s, SplittableRandom r) {
        if (r.nextInt(16) != 0) {
            return L;
        }
        return new FuzzRig.Limits(s.ramBytes() - Wire.PAGE_SIZE * (1 + r.nextInt(4)), L.maxDeviceState(), L.maxVmdesc(),
                L.maxBlob());
    }

    static FlushMode flush(Seed s, SplittableRandom r) {
        return r.nextInt(4) == 0 ? FlushMode.AUTO : s.flush();
    }

    static String id(String target, Seed s, long seed) {
        return target + " [" + s.name() + ", input " + seed + "L]";
    }

    // ------------------------------------------------------------------ main stream (§7)

    /** All record types of the main stream; channels (if any) are the seed's, unchanged. */
    @Property(shrinking = ShrinkingMode.OFF, edgeCases = EdgeCasesMode.NONE, afterFailure = AfterFailureMode.RANDOM_SEED)
    @FuzzTarget(name = "main stream", share = 0.10)
    void mainStream(@ForAll long generated) {
        long seed = Fuzz.input(generated);
        SplittableRandom r = new SplittableRandom(seed);
        Fuzz.next();
        Seed s = PRECOPY.get(r.nextInt(PRECOPY.size()));
        Seed other = PRECOPY.get(r.nextInt(PRECOPY.size()));
        byte[] main = new Mutator(r, L.asBounds()).mutate(s.main(), other.main());
        FuzzConfig cfg = new FuzzConfig(s.channels().size(), s.compression(), flush(s, r), false, limits(s, r));
        Reads m = new Reads(main, r);
        Reads[] c = FuzzRig.reads(s.channels(), r);
        Fuzz.input(id("main stream", s, seed), sessionBound(total(main, s.channels()), reads(m, c)),
                () -> session(cfg, FuzzRig.run(cfg, m, c)));
    }

    static End session(FuzzConfig cfg, Outcome o) {
        if (o.ramBytes > cfg.limits().maxRam()) {
            throw new AssertionError("guest memory of " + o.ramBytes + " bytes over the limit " + cfg.limits().maxRam());
        }
        if (o.error != null) {
            throw o.error;
        }
        return o.completed ? End.ACCEPTED : End.INCOMPLETE;
    }

    // ------------------------------------------------------------------ multifd channels in a session (§3, §4)

    /** One or two channels of a multifd migration mutated (packets, syncs, compressed payloads). */
    @Property(shrinking = ShrinkingMode.OFF, edgeCases = EdgeCasesMode.NONE, afterFailure = AfterFailureMode.RANDOM_SEED)
    @FuzzTarget(name = "multifd session", share = 0.04)
    void multifdSession(@ForAll long generated) {
        long seed = Fuzz.input(generated);
        SplittableRandom r = new SplittableRandom(seed);
        Fuzz.next();
        Seed s = MULTIFD.get(r.nextInt(MULTIFD.size()));
        Mutator m = new Mutator(r, L.asBounds());
        List<byte[]> ch = new ArrayList<>(s.channels());
        int k = 1 + (r.nextInt(4) == 0 ? 1 : 0);
        for (int i = 0; i < k; i++) {
            int c = r.nextInt(ch.size());
            ch.set(c, m.mutate(ch.get(c), ch.get(r.nextInt(ch.size()))));
        }
        FuzzConfig cfg = new FuzzConfig(s.channels().size(), s.compression(), flush(s, r), false, L);
        Reads mr = new Reads(s.main(), r);
        Reads[] cr = FuzzRig.reads(ch, r);
        Fuzz.input(id("multifd session", s, seed), sessionBound(total(s.main(), ch), reads(mr, cr)),
                () -> session(cfg, FuzzRig.run(cfg, mr, cr)));
    }

    // ------------------------------------------------------------------ multifd hello (§2)

    static final byte[] UUID = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

    /** A hello (and a SYNC packet after it) against random channel counts and UUIDs. */
    @Property(shrinking = ShrinkingMode.OFF, edgeCases = EdgeCasesMode.NONE, afterFailure = AfterFailureMode.RANDOM_SEED)
    @FuzzTarget(name = "multifd hello", share = 0.345)
    void multifdHello(@ForAll long generated) {
        long seed = Fuzz.input(generated);
        SplittableRandom r = new SplittableRandom(seed);
        Fuzz.next();
        int channels = r.nextInt(10);
        byte[] uuid = r.nextBoolean() ? new byte[16] : UUID;
        byte[] helloUuid = r.nextInt(8) == 0 ? (uuid == UUID ? new byte[16] : UUID) : uuid;
        ByteBuffer h = PacketWriter.hello(helloUuid, r.nextInt(Math.max(1, channels + 1)));
        byte[] in = new byte[h.remaining()];
        h.get(in);
        if (r.nextBoolean()) {
            ByteBuffer sync = new PacketWriter().sync(r.nextInt(100), r.nextBoolean() ? 0 : Wire.PAGES_PER_PACKET);
            byte[] p = new byte[sync.remaining()];
            sync.get(p);
            in = cat(in, p);
        }
        byte[] input = new Mutator(r, L.asBounds()).mutate(in, in);
        Reads reads = new Reads(input, r);
        Fuzz.input("multifd hello [input " + seed + "L]", (64 << 10) + 256L * reads.count(), () -> channel(channels, uuid, Compression.NONE,
                NO_MEMORY, reads));
    }

    static final PageRouter NO_MEMORY = new PageRouter();

    /** One channel decoder alone: every read, SYNCs resumed at once, then the close. */
    static End channel(int channels, byte[] uuid, Compression c, PageRouter sink, Reads reads) {
        MultifdChannelDecoder d = new MultifdChannelDecoder(channels, uuid, c, sink, new MultifdChannelDecoder.Listener() {
            @Override
            public void onHello(int id) {
                if (id < 0 || id >= channels) {
                    throw new AssertionError("hello id " + id + " accepted with " + channels + " channels");
                }
            }

            @Override
            public void onSync(int id) {
            }

            @Override
            public void onPacket(int id, int normal, int zero, long payload) {
                if (normal < 0 || zero < 0 || normal + zero > Wire.PAGES_PER_PACKET) {
                    throw new AssertionError("packet with " + normal + " + " + zero + " pages accepted");
                }
            }
        });
        try {
            while (!reads.done()) {
                reads.feed(d::feed);
            }
            d.onClose();
            return End.ACCEPTED;
        } finally {
            d.close();
        }
    }

    // ------------------------------------------------------------------ multifd packets (§3, §5, §6)

    static final GuestMemory OURS = memory(List.of(new BlockSpec(Seeds.BLOCKS[0], Seeds.LENGTHS[0]),
            new BlockSpec(Seeds.BLOCKS[1], Seeds.LENGTHS[1])));
    static final GuestMemory CAPTURED = memory(List.of(new BlockSpec("ram", 16L << 20)));

    static GuestMemory memory(List<BlockSpec> blocks) {
        try {
            return GuestMemory.allocate(blocks, 1L << 30, Backing.anonymous());
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static PageRouter sink(GuestMemory m) {
        PageRouter p = new PageRouter();
        p.memory(m);
        return p;
    }

    static final PageRouter OURS_SINK = sink(OURS);
    static final PageRouter CAPTURED_SINK = sink(CAPTURED);

    /** A whole channel (hello + packets: normal/zero pages, flags, offsets, counts, sizes, payloads). */
    @Property(shrinking = ShrinkingMode.OFF, edgeCases = EdgeCasesMode.NONE, afterFailure = AfterFailureMode.RANDOM_SEED)
    @FuzzTarget(name = "multifd packets", share = 0.20)
    void multifdPackets(@ForAll long generated) {
        long seed = Fuzz.input(generated);
        SplittableRandom r = new SplittableRandom(seed);
        Fuzz.next();
        Seed s = MULTIFD.get(r.nextInt(MULTIFD.size()));
        int c = r.nextInt(s.channels().size());
        Seed o = MULTIFD.get(r.nextInt(MULTIFD.size()));
        byte[] other = o.channels().get(r.nextInt(o.channels().size()));
        byte[] input = new Mutator(r, L.asBounds()).mutate(s.channels().get(c), other);
        PageRouter sink = s.name().startsWith("capture") ? CAPTURED_SINK : OURS_SINK;
        // decoder state is fixed (header scratch, offsets, 1.5 MiB of direct buffers): heap bound is small
        Reads reads = new Reads(input, r);
        Fuzz.input(id("multifd packets", s, seed), (256 << 10) + input.length + 256L * reads.count(),
                () -> channel(s.channels().size(), new byte[16], s.compression(), sink, reads));
    }

    // ------------------------------------------------------------------ compressed payloads (§6)

    /** A channel's compressed stream: its packets' pages and payloads (from {@link PageCompressor}). */
    record Stream(byte[][] pages, byte[][] payload) {}

    static final List<Stream> ZLIB_SEEDS = streams(Compression.ZLIB);
    static final List<Stream> ZSTD_SEEDS = streams(Compression.ZSTD);

    /** 48 streams of 1-4 packets of 1-8 (sometimes up to 128) mixed pages, levels 1 (most), 0 / 9 (zlib), 3 / 19 (zstd). */
    static List<Stream> streams(Compression c) {
        SplittableRandom r = new SplittableRandom(c.ordinal());
        List<Stream> l = new ArrayList<>();
        for (int k = 0; k < 48; k++) {
            int level = k % 6 != 5 ? 1 : c == Compression.ZLIB ? (k % 12 == 5 ? 0 : 9) : (k % 12 == 5 ? 3 : 19);
            int packets = 1 + r.nextInt(4);
            byte[][] pages = new byte[packets][];
            byte[][] payload = new byte[packets][];
            try (PageCompressor pc = PageCompressor.create(c, level)) {
                for (int i = 0; i < packets; i++) {
                    // mostly small packets (fast), one in eight up to the full 128 pages
                    int n = 1 + (r.nextInt(8) == 0 ? r.nextInt(Wire.PAGES_PER_PACKET) : r.nextInt(8));
                    pages[i] = pageData(n, r);
                    ByteBuffer out = ByteBuffer.allocate(PageCompressor.maxCompressedSize(c, pages[i].length));
                    int len = pc.compress(ByteBuffer.wrap(pages[i]), out);
                    payload[i] = Arrays.copyOf(out.array(), len);
                }
            }
            l.add(new Stream(pages, payload));
        }
        return l;
    }

    /** One stream; one packet (and maybe later ones) mutated, or its declared size changed. */
    static void decompress(Compression c, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        Fuzz.next();
        List<Stream> seeds = c == Compression.ZLIB ? ZLIB_SEEDS : ZSTD_SEEDS;
        Stream st = seeds.get(r.nextInt(seeds.size()));
        byte[][] pages = st.pages();
        byte[][] payload = st.payload();
        int packets = pages.length;
        int bad = r.nextInt(packets);
        byte[][] sent = payload.clone();
        int[] size = new int[packets];
        for (int i = 0; i < packets; i++) {
            size[i] = pages[i].length;
        }
        Mutator m = new Mutator(r, PageDecompressor.MAX_PAYLOAD_SIZE, Wire.MULTIFD_PACKET_SIZE);
        boolean sizeOnly = r.nextInt(6) == 0;
        if (sizeOnly) {
            size[bad] = Wire.PAGE_SIZE * (r.nextBoolean() ? Math.max(1, size[bad] / Wire.PAGE_SIZE + (r.nextBoolean() ? 1 : -1))
                    : 1 + r.nextInt(Wire.PAGES_PER_PACKET));
        } else {
            sent[bad] = m.mutate(payload[bad], payload[r.nextInt(packets)]);
            for (int i = bad + 1; i < packets; i++) {
                if (r.nextInt(3) == 0) {
                    sent[i] = m.mutate(payload[i], payload[i]);
                }
            }
        }
        ByteBuffer[] in = new ByteBuffer[packets];
        ByteBuffer[] out = new ByteBuffer[packets];
        for (int i = 0; i < packets; i++) {
            in[i] = switch (r.nextInt(3)) {
                case 0 -> ByteBuffer.allocateDirect(sent[i].length).put(sent[i]).flip();
                case 1 -> ByteBuffer.wrap(sent[i]).asReadOnlyBuffer();
                default -> ByteBuffer.wrap(cat(new byte[3], sent[i]), 3, sent[i].length);
            };
            out[i] = r.nextBoolean() ? ByteBuffer.allocateDirect(size[i]) : ByteBuffer.allocate(size[i]);
        }
        String id = c.qemuName() + " [input " + seed + "L]";
        Fuzz.input(id, 128 << 10, () -> {
            PageDecompressor d = PageDecompressor.create(c);
            try {
                boolean unchanged = true;     // every packet so far is the compressor's, with its size
                for (int i = 0; i < packets; i++) {
                    d.decompress(in[i], out[i]);
                    unchanged &= sent[i] == payload[i] && size[i] == pages[i].length;
                    if (unchanged && !out[i].flip().equals(ByteBuffer.wrap(pages[i]))) {
                        throw new AssertionError("packet " + i + " decoded to other bytes than were compressed");
                    }
                }
                return End.ACCEPTED;
            } catch (dev.multifdcolo.wire.ProtocolException e) {
                // after a rejection the instance must refuse further use, never decode out of step
                try {
                    d.decompress(ByteBuffer.wrap(payload[0]), ByteBuffer.allocate(Wire.PAGE_SIZE));
                    throw new AssertionError("decompressor used after a rejection did not refuse");
                } catch (IllegalStateException expected) {
                    // documented behaviour
                }
                throw e;
            } finally {
                d.close();
            }
        });
    }

    static byte[] pageData(int n, SplittableRandom r) {
        byte[] p = new byte[n * Wire.PAGE_SIZE];
        for (int i = 0; i < n; i++) {
            int kind = r.nextInt(4);
            int at = i * Wire.PAGE_SIZE;
            for (int k = 0; k < Wire.PAGE_SIZE; k++) {
                p[at + k] = switch (kind) {
                    case 0 -> 0;
                    case 1 -> (byte) (k >> 5);
                    case 2 -> (byte) r.nextInt(256);
                    default -> (byte) (r.nextInt(16) == 0 ? r.nextInt(256) : 7);
                };
            }
        }
        return p;
    }

    @Property(shrinking = ShrinkingMode.OFF, edgeCases = EdgeCasesMode.NONE, afterFailure = AfterFailureMode.RANDOM_SEED)
    @FuzzTarget(name = "zlib payloads", share = 0.12)
    void zlib(@ForAll long generated) {
        long seed = Fuzz.input(generated);
        decompress(Compression.ZLIB, seed);
    }

    @Property(shrinking = ShrinkingMode.OFF, edgeCases = EdgeCasesMode.NONE, afterFailure = AfterFailureMode.RANDOM_SEED)
    @FuzzTarget(name = "zstd payloads", share = 0.12)
    void zstd(@ForAll long generated) {
        long seed = Fuzz.input(generated);
        decompress(Compression.ZSTD, seed);
    }

    // ------------------------------------------------------------------ COLO (§9)

    /**
     * A COLO replica that committed checkpoint 1 gets a mutated rest of the stream (main or a
     * channel): the guest image must be the one of the last commit when the session ends, whatever
     * happened after it (rejection = failover, truncation = primary gone).
     */
    @Property(shrinking = ShrinkingMode.OFF, edgeCases = EdgeCasesMode.NONE, afterFailure = AfterFailureMode.RANDOM_SEED)
    @FuzzTarget(name = "colo checkpoints", share = 0.025)
    void colo(@ForAll long generated) {
        long seed = Fuzz.input(generated);
        SplittableRandom r = new SplittableRandom(seed);
        Fuzz.next();
        Seed s = COLO.get(r.nextInt(COLO.size()));
        Mutator m = new Mutator(r, L.asBounds());
        byte[] main = s.main();
        List<byte[]> ch = new ArrayList<>(s.channels());
        if (ch.isEmpty() || r.nextInt(5) < 3) {
            main = mutateAfter(m, main, s.coloMainPrefix());
        } else {
            int c = r.nextInt(ch.size());
            ch.set(c, mutateAfter(m, ch.get(c), s.coloChannelPrefix()[c]));
        }
        byte[] fm = main;
        FuzzConfig cfg = new FuzzConfig(s.channels().size(), s.compression(), flush(s, r), true, L);
        Reads mainReads = new Reads(fm, r, s.precopyEnd());
        Reads[] chReads = FuzzRig.reads(ch, r);
        Fuzz.input(id("colo checkpoints", s, seed), sessionBound(total(main, ch), reads(mainReads, chReads)), () -> {
            Outcome o = FuzzRig.run(cfg, mainReads, chReads);
            if (!o.enteredColo || o.commits < 1) {
                throw new AssertionError("checkpoint 1 (unchanged bytes) did not commit: " + o.message);
            }
            if (o.finalDigest == null || !o.finalDigest.equals(o.committedDigest)) {
                throw new AssertionError("guest image " + o.finalDigest + " at the end is not the one of the last commit "
                        + o.committedDigest + " (" + o.commits + " commits, " + o.message + ")");
            }
            if (o.error != null) {
                throw o.error;
            }
            // every COLO session ends in a failover; "accepted" = a mutated checkpoint still committed
            return o.commits >= 2 ? End.ACCEPTED : End.INCOMPLETE;
        });
    }

    static byte[] mutateAfter(Mutator m, byte[] b, int prefix) {
        byte[] tail = Arrays.copyOfRange(b, prefix, b.length);
        byte[] t = m.mutate(tail, tail);
        return cat(Arrays.copyOf(b, prefix), t);
    }

    static byte[] cat(byte[] a, byte[] b) {
        byte[] x = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, x, a.length, b.length);
        return x;
    }
}
