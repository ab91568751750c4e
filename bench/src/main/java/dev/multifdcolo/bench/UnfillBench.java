package dev.multifdcolo.bench;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.secondary.colo.PageRouter;
import dev.multifdcolo.secondary.stream.MultifdChannelDecoder;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.MultifdHello;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.Wire;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * Packet unfill on a COLO secondary: the real {@link MultifdChannelDecoder} (every §3.7 check,
 * block lookup, offset validation) feeding the real COLO sink ({@link PageRouter} in
 * {@code COLO_STATE}: pages into the cache, bitmap bits set), from a prepared multifd stream in a
 * direct buffer handed over in 64 KiB reads like a socket's. No network, no event loop: the
 * per-packet CPU cost of the receiving side.
 *
 * <ul>
 * <li>{@code normal128}: full packets, 128 normal pages (512 KiB payload copied into the cache);</li>
 * <li>{@code normal1}: one normal page per packet: header work dominates (4 KiB copy);</li>
 * <li>{@code zero128}: 128 zero pages per packet, cache pages already zero (check only, no write).</li>
 * </ul>
 * Score is ns per packet ({@code @OperationsPerInvocation} = packets in the stream).
 *
 * <pre>java -jar target/multifd-colo-bench.jar UnfillBench</pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-Xmx1g"})
public class UnfillBench {
    static final long RAM = 256L << 20;
    static final int PACKETS = 64;
    static final int READ = 64 * 1024;

    @Param({"normal128", "normal1", "zero128"})
    String kind;

    GuestMemory memory;
    PageRouter router;
    ByteBuffer stream;
    final byte[] uuid = new byte[16];
    long packetsSeen;

    @Setup(Level.Trial)
    public void setup() throws Exception {
        memory = GuestMemory.allocate(List.of(new BlockSpec("pc.ram", RAM)), RAM, Backing.anonymous());
        memory.enableColo(Backing.anonymous());
        router = new PageRouter();
        router.memory(memory);
        router.mode(PageRouter.Mode.COLO_STATE);
        int normal = switch (kind) {
            case "normal128" -> Wire.PAGES_PER_PACKET;
            case "normal1" -> 1;
            default -> 0;
        };
        int zero = kind.equals("zero128") ? Wire.PAGES_PER_PACKET : 0;
        long size = Wire.HELLO_LEN + (long) PACKETS * (Wire.PACKET_HEADER_LEN + (long) normal * Wire.PAGE_SIZE);
        stream = ByteBuffer.allocateDirect((int) size).order(ByteOrder.BIG_ENDIAN);
        MultifdHello.encode(stream, uuid, 0);
        Random rnd = new Random(5);
        byte[] page = new byte[Wire.PAGE_SIZE];
        long[] offsets = new long[Wire.PAGES_PER_PACKET];
        for (int p = 0; p < PACKETS; p++) {
            // distinct random pages, as a checkpoint's dirty pages (unsorted, like QEMU 11.1's)
            for (int i = 0; i < normal + zero; i++) {
                offsets[i] = (long) rnd.nextInt((int) (RAM / Wire.PAGE_SIZE)) * Wire.PAGE_SIZE;
            }
            MultifdPacket.encode(stream, 0, Wire.PAGES_PER_PACKET, normal, zero, normal * Wire.PAGE_SIZE, p,
                    "pc.ram", offsets);
            for (int i = 0; i < normal; i++) {
                rnd.nextBytes(page);
                stream.put(page);
            }
        }
        stream.flip();
    }

    @Benchmark
    @OperationsPerInvocation(PACKETS)
    public long unfill() {
        MultifdChannelDecoder d = new MultifdChannelDecoder(1, uuid, Compression.NONE, router,
                new MultifdChannelDecoder.Listener() {
                    @Override
                    public void onHello(int channelId) {
                    }

                    @Override
                    public void onSync(int channelId) {
                    }

                    @Override
                    public void onPacket(int channelId, int normalPages, int zeroPages, long payloadBytes) {
                        packetsSeen++;
                    }
                });
        ByteBuffer all = stream.duplicate();
        int end = all.limit();
        while (all.position() < end) {
            ByteBuffer read = all.duplicate().limit(Math.min(end, all.position() + READ));
            Progress pr = d.feed(read);
            if (pr != Progress.NEED_MORE) {
                throw new IllegalStateException("unexpected " + pr);
            }
            all.position(read.position());
        }
        return packetsSeen;
    }

    @TearDown(Level.Trial)
    public void close() {
        if (packetsSeen == 0) {
            throw new IllegalStateException("no packets decoded");
        }
        memory.close();
    }
}
