package dev.multifdcolo.bench;

import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.compress.PageCompressor;
import dev.multifdcolo.wire.compress.PageDecompressor;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Decode throughput of one multifd channel (one thread, one continuous stream) for full
 * 128-page packets, as a receiving channel thread sees them.
 *
 * <p>Setup compresses a stream of {@value #PACKETS} packets with our {@link PageCompressor}
 * (QEMU's wire format) and prints the compression ratio once. Each invocation decodes the next
 * packet into the page buffer; the stream cannot be replayed from the middle (every packet refers
 * back to earlier ones), so after the last packet the decompressor is replaced by a fresh one, a
 * cost amortised over {@value #PACKETS} packets.
 *
 * <p>Primary score: packets/s. {@code decode:mbPerSec} is the same throughput in MB/s
 * (10^6 bytes) of <em>uncompressed</em> output.
 *
 * <pre>
 *   java -jar target/multifd-colo-bench.jar DecompressBench
 *   java -jar target/multifd-colo-bench.jar DecompressBench -p compression=ZSTD -p content=mixed
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class DecompressBench {
    static final int PAGE = Wire.PAGE_SIZE;
    static final int PAGES = Wire.PAGES_PER_PACKET;
    static final int PACKET_BYTES = PAGES * PAGE;
    static final int PACKETS = 64;

    @Param({"ZLIB", "ZSTD"})
    public Compression compression;

    /** QEMU's default level is 1 for both methods. */
    @Param({"1"})
    public int level;

    /**
     * mixed: 30% random, 30% text-like, 20% zero, 20% sparse (a few bytes set) pages;
     * zeroHeavy: 70% zero or sparse; text: all text-like; random: incompressible.
     */
    @Param({"mixed", "zeroHeavy", "text", "random"})
    public String content;

    /** direct: payload and page buffer off-heap (socket buffers, guest RAM); heap: byte[] backed. */
    @Param({"direct"})
    public String buffers;

    private ByteBuffer[] payloads;
    private ByteBuffer pages;
    private PageDecompressor decompressor;
    private int next;

    /** Bytes of uncompressed output, reported as MB/s. */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    public static class Output {
        public double mbPerSec;

        @Setup(Level.Iteration)
        public void reset() {
            mbPerSec = 0;
        }
    }

    @Setup(Level.Trial)
    public void setup() {
        boolean direct = switch (buffers) {
            case "direct" -> true;
            case "heap" -> false;
            default -> throw new IllegalArgumentException("buffers: direct or heap, not " + buffers);
        };
        SplittableRandom rnd = new SplittableRandom(0x6d756c7469666446L);
        byte[][] plain = new byte[PACKETS][];
        payloads = new ByteBuffer[PACKETS];
        long compressed = 0;
        ByteBuffer out = ByteBuffer.allocateDirect(PageCompressor.maxCompressedSize(compression, PACKET_BYTES));
        try (PageCompressor comp = PageCompressor.create(compression, level)) {
            for (int i = 0; i < PACKETS; i++) {
                plain[i] = packet(content, rnd);
                int n = comp.compress(ByteBuffer.wrap(plain[i]), out.clear());
                ByteBuffer p = direct ? ByteBuffer.allocateDirect(n) : ByteBuffer.allocate(n);
                p.put(out.flip()).flip();
                payloads[i] = p;
                compressed += n;
            }
        }
        pages = direct ? ByteBuffer.allocateDirect(PACKET_BYTES) : ByteBuffer.allocate(PACKET_BYTES);

        // correctness guard: the whole stream decodes back
        try (PageDecompressor check = PageDecompressor.create(compression)) {
            byte[] got = new byte[PACKET_BYTES];
            for (int i = 0; i < PACKETS; i++) {
                check.decompress(payloads[i].duplicate(), pages.clear());
                pages.flip().get(got);
                if (!Arrays.equals(plain[i], got)) {
                    throw new IllegalStateException("packet " + i + " does not round-trip");
                }
            }
        }
        long raw = (long) PACKETS * PACKET_BYTES;
        System.out.printf("%n[DecompressBench] %s level %d, %s pages, %s buffers: %d packets x %d pages, "
                        + "%.1f MiB -> %.1f MiB, ratio %.2f (%.0f bytes/page)%n",
                compression.qemuName(), level, content, buffers, PACKETS, PAGES, raw / 1048576.0,
                compressed / 1048576.0, (double) raw / compressed, (double) compressed / (PACKETS * PAGES));

        decompressor = PageDecompressor.create(compression);
        next = 0;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        decompressor.close();
    }

    @Benchmark
    public byte decode(Output output) {
        if (next == PACKETS) {
            decompressor.close();
            decompressor = PageDecompressor.create(compression);
            next = 0;
        }
        decompressor.decompress(payloads[next++].duplicate(), pages.clear());
        output.mbPerSec += PACKET_BYTES / 1e6;
        return pages.get(PACKET_BYTES - 1);
    }

    // ------------------------------------------------------------------ page contents

    private static final String[] WORDS = ("the of and to in is was for on that with as by at from "
            + "kernel page memory migration channel packet buffer qemu guest host error return "
            + "static void int long struct if else while for {} ( ) ; = == != -> 0x1000 NULL\n")
            .split(" ");

    private enum Kind { RANDOM, TEXT, ZERO, SPARSE }

    static byte[] packet(String content, SplittableRandom rnd) {
        ByteBuffer b = ByteBuffer.allocate(PACKET_BYTES);
        for (int i = 0; i < PAGES; i++) {
            int dice = rnd.nextInt(10);
            Kind k = switch (content) {
                case "mixed" -> dice < 3 ? Kind.RANDOM : dice < 6 ? Kind.TEXT : dice < 8 ? Kind.ZERO : Kind.SPARSE;
                case "zeroHeavy" -> dice < 1 ? Kind.RANDOM : dice < 3 ? Kind.TEXT : dice < 7 ? Kind.ZERO : Kind.SPARSE;
                case "text" -> Kind.TEXT;
                case "random" -> Kind.RANDOM;
                default -> throw new IllegalArgumentException("content: mixed, zeroHeavy, text or random, not " + content);
            };
            page(b, k, rnd);
        }
        return b.array();
    }

    private static void page(ByteBuffer out, Kind kind, SplittableRandom rnd) {
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
                    out.put(w, 0, Math.min(w.length, start + PAGE - out.position()));
                }
            }
            case ZERO -> out.position(start + PAGE);
            case SPARSE -> {
                out.position(start + PAGE);
                for (int j = rnd.nextInt(1, 16); j > 0; j--) {
                    out.put(start + rnd.nextInt(PAGE), (byte) rnd.nextInt(1, 256));
                }
            }
        }
    }
}
