package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.OutputStream;
import java.lang.foreign.ValueLayout;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Real COLO primaries (QEMU 7.2 with ENABLE_COLO, 11.1 with return path; plain and multifd),
 * replayed as a primary would: precopy, wait for our READY, then three checkpoints. Our replies
 * must be exactly what a QEMU secondary sends, three checkpoints must commit, and when the
 * primary goes away the replica fails over with the last checkpoint's image.
 */
class ColoCaptureTest {
    static Vertx vertx;

    @BeforeAll
    static void start() {
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(4));
        BlockedThreadWatch.install();
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
        BlockedThreadWatch.assertNone();
    }

    record Case(String name, String dir, String main, List<String> channels, int coloStart, FlushMode flush,
                boolean returnPath, List<Long> dirty) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case("7.2 colo plain", "qemu-7.2", "colo_plain_0.bin", List.of(), 54030, FlushMode.LEGACY, false, List.of(0L, 5L, 0L)),
                new Case("7.2 colo multifd 2", "qemu-7.2", "colo_mf_0.bin", List.of("colo_mf_1.bin", "colo_mf_2.bin"),
                        37614, FlushMode.LEGACY, false, List.of(0L, 5L, 0L)),
                new Case("11.1 colo plain", "qemu-11.1", "colo_plain_0.bin", List.of(), 54381, FlushMode.MODERN, true, List.of(0L, 5L, 5L)),
                new Case("11.1 colo multifd 4", "qemu-11.1", "colo_mf4_0.bin",
                        List.of("colo_mf4_1.bin", "colo_mf4_2.bin", "colo_mf4_3.bin", "colo_mf4_4.bin"), 1157,
                        FlushMode.MODERN, true, List.of(0L, 5L, 5L)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void threeCheckpointsThenFailover(Case c) throws Exception {
        int port = Replay.freePort();
        ReplicaConfig cfg = ReplicaConfig.defaults("colo", "127.0.0.1", port).withMultifd(c.channels().size())
                .withFlushMode(c.flush()).withCompression(Compression.NONE)
                .withColo(ReplicaConfig.ColoOptions.on(600).withHeartbeat(10_000));
        Replica r = new Replica(cfg);
        r.deploy(vertx, 4).await();
        List<Checkpoint> commits = new CopyOnWriteArrayList<>();
        r.onSessionStart(s -> s.onCommit(commits::add));
        var next = r.nextMigration();
        byte[] main = Captures.load(c.dir() + "/" + c.main());
        List<Socket> sockets = new ArrayList<>();
        try {
            Socket m = connect(port, sockets);
            OutputStream mo = m.getOutputStream();
            mo.write(main, 0, c.coloStart());
            // Causal replay of the channels, as a real primary sends them: precopy and the first
            // checkpoint's packets now, each later checkpoint's only after the previous LOADED (a
            // primary sends no checkpoint RAM before it has the previous checkpoint's LOADED).
            // A checkpoint's packets end with its SYNC on every channel.
            List<byte[]> chData = new ArrayList<>();
            List<OutputStream> chOut = new ArrayList<>();
            List<List<Integer>> syncEnds = new ArrayList<>();
            for (String ch : c.channels()) {
                byte[] d = Captures.load(c.dir() + "/" + ch);
                chData.add(d);
                syncEnds.add(syncEnds(d));
                chOut.add(connect(port, sockets).getOutputStream());
            }
            int[] written = new int[chData.size()];
            java.util.function.IntConsumer upToCheckpoint = k -> {
                for (int i = 0; i < chData.size(); i++) {
                    List<Integer> ends = syncEnds.get(i);
                    int precopySyncs = ends.size() - 3;       // one SYNC per checkpoint, three checkpoints
                    int end = k >= 3 ? chData.get(i).length : ends.get(precopySyncs + k);
                    try {
                        chOut.get(i).write(chData.get(i), written[i], end - written[i]);
                        chOut.get(i).flush();
                    } catch (java.io.IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                    written[i] = end;
                }
            };
            upToCheckpoint.accept(0);
            // a primary waits for CHECKPOINT_READY before its first request
            byte[] before = readUntilReady(m, c.returnPath());
            mo.write(main, c.coloStart(), main.length - c.coloStart());
            mo.flush();
            java.io.ByteArrayOutputStream replies = new java.io.ByteArrayOutputStream();
            for (int k = 1; k <= 3; k++) {
                replies.write(readN(m, 12));             // REPLY, RECEIVED, LOADED of checkpoint k
                upToCheckpoint.accept(k);
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (commits.size() < 4 && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertEquals(4, commits.size(), "epoch 0 (precopy) + three checkpoints committed: " + commits);
            byte[] after = replies.toByteArray();
            // each checkpoint: REPLY(2), RECEIVED(5), LOADED(6)
            ByteBuffer b = ByteBuffer.wrap(after);
            for (int k = 0; k < 3; k++) {
                assertEquals(2, b.getInt());
                assertEquals(5, b.getInt());
                assertEquals(6, b.getInt());
            }
            if (c.returnPath()) {
                // like the real 11.1 secondary: PONG(1), SHUT(0), then READY
                assertEquals("0002000400000001" + "0001000400000000" + "00000000", HexFormat.of().formatHex(before));
            } else {
                assertEquals("00000000", HexFormat.of().formatHex(before));
            }
        } finally {
            for (Socket s : sockets) {
                s.close();
            }
        }
        MigrationResult res = next.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
        assertNotNull(res.colo());
        assertEquals(3, res.colo().epoch());
        assertTrue(res.colo().failoverReason().contains("closed"), res.colo().failoverReason());
        byte[] expected = new byte[16 << 20];
        byte[] blob = Captures.load("qemu-7.2/guest-ram-blob-at-0x1000.bin");
        System.arraycopy(blob, 0, expected, 0x1000, blob.length);
        assertArrayEquals(expected, res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE),
                "after failover the image is the last checkpoint's");
        // the loader's 5 pages re-dirtied by system_reset (4 PAGE + 1 ZERO) in the checkpoints the capture says
        assertEquals(c.dirty(), commits.stream().skip(1).map(Checkpoint::dirtyPages).toList());
        assertEquals(183, commits.get(3).blobBytes());
        res.memory().close();
    }

    /** End offsets of the SYNC packets of an uncompressed multifd channel capture (hello, then packets). */
    static List<Integer> syncEnds(byte[] ch) {
        ByteBuffer b = ByteBuffer.wrap(ch);
        List<Integer> ends = new ArrayList<>();
        int p = dev.multifdcolo.wire.Wire.HELLO_LEN;
        while (p + dev.multifdcolo.wire.Wire.PACKET_HEADER_LEN <= ch.length) {
            int flags = b.getInt(p + 8);
            int normal = b.getInt(p + 16);
            p += dev.multifdcolo.wire.Wire.PACKET_HEADER_LEN + normal * dev.multifdcolo.wire.Wire.PAGE_SIZE;
            if ((flags & 1) != 0) {
                ends.add(p);
            }
        }
        assertEquals(ch.length, p, "channel capture parsed to its end");
        return ends;
    }

    static Socket connect(int port, List<Socket> all) throws Exception {
        Socket s = new Socket();
        s.setTcpNoDelay(true);
        s.connect(new InetSocketAddress("127.0.0.1", port));
        s.setSoTimeout(10_000);
        all.add(s);
        return s;
    }

    static byte[] readUntilReady(Socket s, boolean returnPath) throws Exception {
        return readN(s, returnPath ? 8 + 8 + 4 : 4);
    }

    static byte[] readN(Socket s, int n) throws Exception {
        byte[] b = s.getInputStream().readNBytes(n);
        assertEquals(n, b.length, "reply bytes " + Arrays.toString(b));
        return b;
    }
}
