package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.RejectionRig.Rejects;
import dev.multifdcolo.secondary.StreamBytes.Migration;
import dev.multifdcolo.secondary.StreamBytes.Packet;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static dev.multifdcolo.secondary.StreamBytes.RAM;
import static dev.multifdcolo.secondary.StreamBytes.RAM_ID;
import static dev.multifdcolo.secondary.StreamBytes.cat;
import static dev.multifdcolo.secondary.StreamBytes.hello;
import static dev.multifdcolo.secondary.StreamBytes.prefix;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Rules that only a session can raise (channel classification, hello binding, multifd off, a
 * channel closing, the sync pairing, the RAM limit, COLO not configured), over real TCP into a
 * {@link Replica} and its {@link ChannelVerticle}s; decoder rules reaching the session with
 * their rule intact; and "loses nothing": after rejected sessions the same replica still receives
 * a real capture byte-exact, and a replica next to one being fed bad streams is not disturbed.
 */
class RejectionNetworkTest {
    static Vertx vertx;
    static final Captures PLAIN72 = Captures.all().get(0);
    static final Captures MF2 = Captures.all().get(1);
    static final Captures ZSTD2 = Captures.all().get(3);

    @BeforeAll
    static void start() {
        // zstd-jni links its native binding in a class initializer (~300 ms cold): done on an event
        // loop it stalls that loop and every other one creating a zstd context meanwhile. Do it here,
        // so the blocked-loop check below measures decoding, not a one-time library load.
        // Netty's allocator class init (first listen) likewise. The limit is 1 s: a decoder that spins
        // or blocks on bad input trips it; a cold JVM on a busy build machine does not.
        dev.multifdcolo.wire.compress.PageDecompressor.create(Compression.ZSTD).close();
        io.netty.buffer.ByteBufAllocator.DEFAULT.buffer(1).release();
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(4).setBlockedThreadCheckInterval(100)
                .setMaxEventLoopExecuteTime(1000).setMaxEventLoopExecuteTimeUnit(TimeUnit.MILLISECONDS));
        BlockedThreadWatch.install();
        warningsBefore = BlockedThreadWatch.WARNINGS.size();
    }

    /** The watch's list is shared by every test class of the JVM: only count what came while this class ran. */
    static int warningsBefore;

    @AfterAll
    static void stop() {
        vertx.close().await();
        List<String> ours = BlockedThreadWatch.WARNINGS.subList(warningsBefore, BlockedThreadWatch.WARNINGS.size());
        assertTrue(ours.isEmpty(), "event loop blocked: " + ours);
    }

    // ------------------------------------------------------------------ helpers

    static Replica deploy(ReplicaConfig cfg) {
        Replica r = new Replica(cfg);
        r.deploy(vertx, 2).await();
        return r;
    }

    static ReplicaConfig config(Captures c) {
        try {
            return c.config("127.0.0.1", Replay.freePort());
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    static ReplicaConfig config(Migration m) {
        try {
            return ReplicaConfig.defaults("synthetic", "127.0.0.1", Replay.freePort()).withMultifd(m.channelCount())
                    .withFlushMode(m.flush()).withCompression(m.compression());
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    static ReplicaConfig expectingMachine(ReplicaConfig c, String machine) {
        return new ReplicaConfig(c.name(), c.host(), c.port(), c.multifdChannels(), c.flushMode(), c.compression(), c.uuid(),
                c.maxRamBytes(), c.backing(), c.maxDeviceStateBytes(), c.maxVmdescBytes(), machine, c.coloOptions(), c.guards(),
                c.tls());
    }

    /** The migration failed with {@code rule}; returns the failure for message checks. */
    static MigrationFailedException rejected(Future<MigrationResult> f, Rule rule) {
        ExecutionException e = assertThrows(ExecutionException.class,
                () -> f.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS));
        MigrationFailedException m = assertInstanceOf(MigrationFailedException.class, e.getCause());
        assertEquals(rule, m.rule(), m.getMessage());
        return m;
    }

    static void says(Exception e, String... parts) {
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), () -> "message lacks '" + p + "': " + e.getMessage());
        }
    }

    /** Replays a real capture into {@code r} and checks the image byte for byte. */
    static void receivesByteExact(Replica r, Captures c, long seed) throws Exception {
        var next = r.nextMigration();
        try (Replay replay = new Replay()) {
            replay.play(r.config().port(), c.mainBytes(), c.channelBytes(), seed, true).get(20, TimeUnit.SECONDS);
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
            assertArrayEquals(c.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            res.memory().close();
        }
    }

    static void await(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(5);
        }
    }

    /** A source under the test's control: raw sockets to one port, written from the test thread. */
    static final class Source implements AutoCloseable {
        final int port;
        final List<Socket> sockets = new ArrayList<>();

        Source(int port) {
            this.port = port;
        }

        Socket connect() throws IOException {
            Socket s = new Socket();
            s.setTcpNoDelay(true);
            s.connect(new InetSocketAddress("127.0.0.1", port));
            sockets.add(s);
            return s;
        }

        /** Writes; a receiver that already closed the connection (it rejected it) is fine. */
        Source send(Socket s, byte[] b, int from, int to) {
            try {
                s.getOutputStream().write(b, from, to - from);
                s.getOutputStream().flush();
            } catch (IOException ignored) {
                // the receiver closed the connection: that is what a rejection does
            }
            return this;
        }

        Source send(Socket s, byte[] b) {
            return send(s, b, 0, b.length);
        }

        void shut(Socket s) {
            try {
                s.shutdownOutput();
            } catch (IOException ignored) {
                // already closed by the receiver
            }
        }

        /** One connection that sends {@code b} and closes its sending side. */
        Socket stream(byte[] b) throws IOException {
            Socket s = connect();
            send(s, b);
            shut(s);
            return s;
        }

        /**
         * A main channel and its multifd channels, all sent and closed. The channels connect once
         * {@code r} has a session, i.e. the main channel was classified: a channel classified after
         * an early rejection would start a session of its own (see the disabled tests at the end).
         */
        void migration(Replica r, byte[] main, List<byte[]> channels) throws Exception {
            long failed = r.failed();
            stream(main);
            await(() -> r.current() != null || r.failed() > failed, "the main channel's session");
            for (byte[] c : channels) {
                stream(c);
            }
        }

        @Override
        public void close() {
            for (Socket s : sockets) {
                try {
                    s.close();
                } catch (IOException ignored) {
                    // best effort
                }
            }
        }
    }

    // ------------------------------------------------------------------ session rules

    @Test
    @Rejects(Rule.CHANNEL_MAGIC)
    void connectionWithNeitherMagicIsTurnedAwayWithoutASession() throws Exception {
        Replica r = deploy(config(MF2));
        byte[] notQevm = MF2.mainBytes();
        notQevm[3] = 'N';                                                   // "QEVN"
        try (Source s = new Source(r.config().port())) {
            s.stream(notQevm);
            s.stream(hello(0x11223345, 1, new byte[16], 0));                 // a multifd hello with a bad magic
            s.stream("GET / HTTP/1.0\r\n\r\n".getBytes());
            await(() -> r.rejections(Rule.CHANNEL_MAGIC) == 3, "three CHANNEL_MAGIC rejections");
        }
        assertNull(r.current(), "a connection with neither magic starts no session");
        assertEquals(0, r.failed());
        receivesByteExact(r, MF2, 1);
    }

    @Test
    @Rejects(Rule.CHANNEL_DUPLICATE_MAIN)
    void secondMainChannelIsTurnedAwayAndTheFirstMigrationGoesOn() throws Exception {
        Replica r = deploy(config(MF2));
        var next = r.nextMigration();
        byte[] main = MF2.mainBytes();
        try (Source s = new Source(r.config().port())) {
            Socket first = s.connect();
            s.send(first, main, 0, 100);
            await(() -> r.current() != null, "the session of the first main channel");
            s.stream(main);                                                 // a second QEVM connection
            await(() -> r.rejections(Rule.CHANNEL_DUPLICATE_MAIN) == 1, "the duplicate main rejected");
            s.send(first, main, 100, main.length).shut(first);
            for (byte[] c : MF2.channelBytes()) {
                s.stream(c);
            }
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
            assertArrayEquals(MF2.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            res.memory().close();
        }
        assertEquals(1, r.completed());
        assertEquals(0, r.failed());
    }

    @Test
    @Rejects(Rule.HELLO_DUPLICATE_ID)
    void twoChannelsWithTheSameId() throws Exception {
        Replica r = deploy(config(MF2));
        var next = r.nextMigration();
        List<byte[]> ch = MF2.channelBytes();
        try (Source s = new Source(r.config().port())) {
            s.migration(r, MF2.mainBytes(), List.of(ch.get(0), ch.get(0)));
            says(rejected(next, Rule.HELLO_DUPLICATE_ID), "hello-duplicate-id: received id 0 already setup");
        }
        receivesByteExact(r, MF2, 2);
    }

    @Test
    @Rejects(Rule.MULTIFD_NOT_ENABLED)
    void multifdChannelIntoAPlainReplica() throws Exception {
        Replica r = deploy(config(PLAIN72));
        var next = r.nextMigration();
        try (Source s = new Source(r.config().port())) {
            s.stream(hello(0));
            says(rejected(next, Rule.MULTIFD_NOT_ENABLED), "multifd-channels is 0 for replica");
        }
        assertTrue(r.rejections(Rule.MULTIFD_NOT_ENABLED) >= 1);
        receivesByteExact(r, PLAIN72, 3);
    }

    @Test
    @Rejects(Rule.CHANNEL_TRUNCATED)
    void channelsClosedInsideARecord() throws Exception {
        Replica plain = deploy(config(PLAIN72));
        var next = plain.nextMigration();
        try (Source s = new Source(plain.config().port())) {
            s.stream(Arrays.copyOf(PLAIN72.mainBytes(), 1000));
            says(rejected(next, Rule.CHANNEL_TRUNCATED), "main channel closed in state");
        }
        receivesByteExact(plain, PLAIN72, 4);

        Replica r = deploy(config(MF2));
        var next2 = r.nextMigration();
        List<byte[]> ch = MF2.channelBytes();
        try (Source s = new Source(r.config().port())) {
            // channel 0: hello, SYNC, then 700 bytes of the data packet's header
            s.migration(r, MF2.mainBytes(), List.of(Arrays.copyOf(ch.get(0), Wire.HELLO_LEN + Wire.PACKET_HEADER_LEN + 700), ch.get(1)));
            says(rejected(next2, Rule.CHANNEL_TRUNCATED), "multifd channel 0 closed inside a packet header");
        }
        receivesByteExact(r, MF2, 5);
    }

    @Test
    @Rejects(Rule.CHANNEL_CLOSED)
    void mainChannelClosedBetweenRecords() throws Exception {
        Replica r = deploy(config(PLAIN72));
        var next = r.nextMigration();
        try (Source s = new Source(r.config().port())) {
            s.stream(Arrays.copyOf(PLAIN72.mainBytes(), 67));                // header, configuration, RAM setup section
            says(rejected(next, Rule.CHANNEL_CLOSED), "main channel closed between records", "before the migration finished");
        }
        receivesByteExact(r, PLAIN72, 6);
    }

    @Test
    @Rejects(Rule.SYNC_PROTOCOL)
    void channelClosedBeforeItsSync() throws Exception {
        Replica r = deploy(config(MF2));
        var next = r.nextMigration();
        List<byte[]> ch = MF2.channelBytes();
        try (Source s = new Source(r.config().port())) {
            // channel 1 sends its hello and the setup SYNC, then closes cleanly at a packet boundary
            s.migration(r, MF2.mainBytes(), List.of(ch.get(0), Arrays.copyOf(ch.get(1), Wire.HELLO_LEN + Wire.PACKET_HEADER_LEN)));
            says(rejected(next, Rule.SYNC_PROTOCOL), "multifd channel 1 closed before reaching the sync");
        }
        receivesByteExact(r, MF2, 7);
    }

    @Test
    @Rejects(Rule.SYNC_PROTOCOL)
    void syncThatTheMainStreamNeverPairs() throws Exception {
        Migration m = StreamBytes.multifd(2, FlushMode.LEGACY, Compression.NONE).withChannelInsert(1, 5, StreamBytes.sync(99).bytes());
        Replica r = deploy(config(m));
        var next = r.nextMigration();
        byte[] main = m.main();
        try (Source s = new Source(r.config().port())) {
            Socket mainSocket = s.connect();
            s.send(mainSocket, main, 0, main.length - 5);
            for (byte[] c : m.channels()) {
                s.stream(c);
            }
            // 3 paired SYNCs per channel, and channel 1's extra one
            await(() -> r.current() != null && r.current().stats().syncs.sum() == 7, "all SYNC packets read");
            s.send(mainSocket, main, main.length - 5, main.length).shut(mainSocket);
            says(rejected(next, Rule.SYNC_PROTOCOL), "1 multifd channel(s) sent a SYNC the main stream never paired");
        }
    }

    @Test
    @Rejects(Rule.MEM_SIZE_LIMIT)
    void ramOverTheLimitIsRefusedFastAndAllocatesNothing() throws Exception {
        Replica r = deploy(config(PLAIN72));
        var next = r.nextMigration();
        long t0 = System.nanoTime();
        try (Source s = new Source(r.config().port())) {
            s.stream(cat(prefix().start(RAM_ID, RAM, 0, 4).memSize(1L << 60).block(RAM, 1L << 60).eos().footer(RAM_ID).toBytes(),
                    RejectionMainStreamTest.afterSetup()));
            says(rejected(next, Rule.MEM_SIZE_LIMIT), "RAM of 1152921504606846976+ bytes exceeds the limit of 68719476736 bytes");
        }
        assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(2), "refused fast");
        receivesByteExact(r, PLAIN72, 8);

        // a real 16 MiB capture into a replica allowing 8 MiB
        Replica small = deploy(config(PLAIN72).withLimits(8 << 20, 64 << 20, 16 << 20));
        var next2 = small.nextMigration();
        try (Source s = new Source(small.config().port())) {
            s.stream(PLAIN72.mainBytes());
            says(rejected(next2, Rule.MEM_SIZE_LIMIT), "exceeds the limit of 8388608 bytes");
        }
        // a COLO replica needs the RAM twice (image + cache)
        Replica colo = deploy(config(PLAIN72).withLimits(24 << 20, 64 << 20, 16 << 20)
                .withColo(ReplicaConfig.ColoOptions.on(1000)));
        var next3 = colo.nextMigration();
        try (Source s = new Source(colo.config().port())) {
            s.stream(PLAIN72.mainBytes());
            says(rejected(next3, Rule.MEM_SIZE_LIMIT), "RAM plus COLO cache of 33554432 bytes exceeds the limit of 25165824 bytes");
        }
    }

    @Test
    @Rejects(Rule.COLO_NOT_ENABLED)
    void enableColoIntoAReplicaWithoutColo() throws Exception {
        Replica r = deploy(config(PLAIN72));
        var next = r.nextMigration();
        try (Source s = new Source(r.config().port())) {
            s.stream(Captures.load("qemu-7.2/colo_plain_0.bin"));          // a 7.2 COLO primary: ENABLE_COLO after the configuration
            says(rejected(next, Rule.COLO_NOT_ENABLED), "the source sent ENABLE_COLO but replica", "is not configured for COLO");
        }
        receivesByteExact(r, PLAIN72, 9);
    }

    // ------------------------------------------------------------------ decoder rules reach the session intact

    record Case(Rule rule, String says, ReplicaConfig config, byte[] main, List<byte[]> channels) {}

    @Test
    void decoderRejectionsReachTheSessionWithTheirRule() throws Exception {
        byte[] uuid = new byte[16];
        Arrays.fill(uuid, (byte) 0x11);
        Migration mf = StreamBytes.multifd(2, FlushMode.LEGACY, Compression.NONE);
        Packet outside = StreamBytes.data(5, 0x20000, StreamBytes.RAM_LEN);
        Captures zlib = Captures.all().get(2);
        List<byte[]> p = RejectionMainStreamTest.PLAIN.mainParts();
        List<Case> cases = List.of(
                new Case(Rule.STREAM_VERSION, "stream version 2 is obsolete", config(PLAIN72),
                        cat(new StreamBytes().be32(Wire.QEVM_MAGIC).be32(2).toBytes(), RejectionMainStreamTest.afterConfiguration()), List.of()),
                new Case(Rule.CONFIG_MACHINE, "machine type 'none', this replica expects 'pc-q35-7.2'",
                        expectingMachine(config(PLAIN72), "pc-q35-7.2"), PLAIN72.mainBytes(), List.of()),
                new Case(Rule.HELLO_UUID, "received uuid 00000000000000000000000000000000, expected 1111",
                        // one channel: a second one, read after the rejection, would start a session of its own
                        config(MF2).withUuid(uuid), MF2.mainBytes(), List.of(MF2.channelBytes().get(0))),
                new Case(Rule.HELLO_CHANNEL_ID, "received channel id 1, but only 1 multifd channels are configured",
                        // only the out-of-range channel: with channel 0 too, main and channel 0 may finish first
                        config(MF2).withMultifd(1), MF2.mainBytes(), List.of(MF2.channelBytes().get(1))),
                new Case(Rule.PACKET_COMPRESSION, "packet compression bits 0x2, but this replica expects none",
                        config(zlib).withCompression(Compression.NONE), zlib.mainBytes(), zlib.channelBytes()),
                new Case(Rule.PACKET_OFFSET_RANGE, "page offset 0x100000 outside block ram", config(mf), mf.main(),
                        mf.withChannelPart(1, StreamBytes.CHANNEL_DATA, outside.bytes()).channels()),
                new Case(Rule.RAM_OFFSET, "illegal RAM offset 0xfffffffffffff000", config(PLAIN72),
                        RejectionMainStreamTest.withPart(new StreamBytes().part(RAM_ID).zero(RAM, 0xfffffffffffff000L).eos()
                                .footer(RAM_ID)), List.of()),
                new Case(Rule.DEVICE_STATE_LIMIT, "device state exceeds 64 bytes", config(PLAIN72).withLimits(64L << 20, 64, 1 << 20),
                        PLAIN72.mainBytes(), List.of()),
                new Case(Rule.VMDESC_LIMIT, "VMDESCRIPTION of 2147483647 bytes", config(PLAIN72),
                        cat(p.get(0), p.get(1), p.get(2), new StreamBytes().eof().u8(0x06).be32(0x7fffffff).toBytes()), List.of()));
        for (Case c : cases) {
            Replica r = deploy(c.config());
            var next = r.nextMigration();
            try (Source s = new Source(c.config().port())) {
                s.migration(r, c.main(), c.channels());
                says(rejected(next, c.rule()), c.rule().id() + ": " + c.says());
            }
            assertEquals(1, r.failed(), c.rule().name());
        }
    }

    // ------------------------------------------------------------------ loses nothing

    @Test
    void aReplicaReceivesByteExactAfterASeriesOfRejectedSessions() throws Exception {
        Replica r = deploy(config(MF2));
        List<byte[]> ch = MF2.channelBytes();
        byte[] farPage = ch.get(0).clone();
        // channel 0's data packet (after hello and a SYNC) gets an offset beyond the 16 MiB block
        ByteBuffer.wrap(farPage).putLong(Wire.HELLO_LEN + Wire.PACKET_HEADER_LEN + 320, 1L << 24);
        Object[][] bad = {
            {Rule.STREAM_VERSION, cat(new StreamBytes().be32(Wire.QEVM_MAGIC).be32(4).toBytes()), List.of()},
            {Rule.PACKET_OFFSET_RANGE, MF2.mainBytes(), List.of(farPage, ch.get(1))},
            {Rule.SYNC_PROTOCOL, MF2.mainBytes(), List.of(ch.get(0), Arrays.copyOf(ch.get(1), Wire.HELLO_LEN + Wire.PACKET_HEADER_LEN))},
            {Rule.CHANNEL_TRUNCATED, Arrays.copyOf(MF2.mainBytes(), 5000), ch},
            {Rule.HELLO_DUPLICATE_ID, MF2.mainBytes(), List.of(ch.get(1), ch.get(1))},
        };
        for (Object[] b : bad) {
            var next = r.nextMigration();
            try (Source s = new Source(r.config().port())) {
                @SuppressWarnings("unchecked")
                List<byte[]> channels = (List<byte[]>) b[2];
                s.migration(r, (byte[]) b[1], channels);
                rejected(next, (Rule) b[0]);
            }
            await(() -> r.current() == null, "the rejected session to end");
        }
        assertEquals(bad.length, r.failed());
        receivesByteExact(r, MF2, 10);
        assertEquals(1, r.completed());
    }

    @Test
    void aReplicaIsNotDisturbedByBadStreamsIntoItsNeighbour() throws Exception {
        Replica good = deploy(config(ZSTD2));
        Replica bad = deploy(config(MF2));
        var next = good.nextMigration();
        List<byte[]> ch = MF2.channelBytes();
        try (Source s = new Source(good.config().port())) {
            // the good migration trickles in over ~1 s while the neighbour rejects one stream after another
            List<Socket> sockets = new ArrayList<>();
            List<byte[]> streams = new ArrayList<>();
            streams.add(ZSTD2.mainBytes());
            streams.addAll(ZSTD2.channelBytes());
            for (int i = 0; i < streams.size(); i++) {
                sockets.add(s.connect());
            }
            CompletableFuture<Void> trickle = CompletableFuture.runAsync(() -> {
                int[] pos = new int[streams.size()];
                boolean more = true;
                while (more) {
                    more = false;
                    for (int i = 0; i < streams.size(); i++) {
                        byte[] d = streams.get(i);
                        int n = Math.min(8192, d.length - pos[i]);
                        if (n > 0) {
                            s.send(sockets.get(i), d, pos[i], pos[i] + n);
                            pos[i] += n;
                            more = true;
                            if (pos[i] == d.length) {
                                s.shut(sockets.get(i));
                            }
                        }
                    }
                    try {
                        Thread.sleep(10);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        return;
                    }
                }
            });
            int rejectedSessions = 0;
            while (!trickle.isDone()) {
                var failed = bad.nextMigration();
                try (Source b = new Source(bad.config().port())) {
                    int k = rejectedSessions % 3;
                    if (k == 0) {
                        b.migration(bad, MF2.mainBytes(), List.of(ch.get(0), ch.get(0)));               // duplicate id
                    } else if (k == 1) {
                        b.migration(bad, Arrays.copyOf(MF2.mainBytes(), 3000), ch);                     // truncated main
                    } else {
                        b.migration(bad, cat(prefix().start(RAM_ID, RAM, 0, 4).memSize(1L << 60).block(RAM, 1L << 60).toBytes()),
                                List.of());                                                        // 2^60 bytes of RAM
                    }
                    rejected(failed, k == 0 ? Rule.HELLO_DUPLICATE_ID : k == 1 ? Rule.CHANNEL_TRUNCATED : Rule.MEM_SIZE_LIMIT);
                }
                await(() -> bad.current() == null, "the rejected session to end");
                rejectedSessions++;
            }
            trickle.get(10, TimeUnit.SECONDS);
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
            assertArrayEquals(ZSTD2.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            res.memory().close();
            assertTrue(rejectedSessions >= 3, "the neighbour rejected " + rejectedSessions + " sessions meanwhile");
            assertEquals(rejectedSessions, bad.failed());
        }
        receivesByteExact(bad, MF2, 11);
    }

    /**
     * A source whose multifd channels never connect (firewall, crash) gives up and closes its main
     * channel while that channel waits at the first sync barrier. The session must end (and the
     * replica accept the next migration) instead of waiting for those channels forever.
     */
    @Test
    void mainChannelClosedWhileWaitingForItsChannelsEndsTheSession() throws Exception {
        Replica r = deploy(config(MF2));
        var next = r.nextMigration();
        try (Source s = new Source(r.config().port())) {
            s.stream(MF2.mainBytes());
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> next.toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS));
            MigrationFailedException m = assertInstanceOf(MigrationFailedException.class, e.getCause());
            assertEquals(Rule.CHANNEL_CLOSED, m.rule(), m.getMessage());
        }
        receivesByteExact(r, MF2, 13);
    }

    /**
     * QEMU connects its multifd channels right after the main channel. When the main channel is
     * rejected first, those channels arrive after the session ended; they must not leave a
     * session behind that the next, valid migration then runs into.
     */
    @Test
    void lateChannelsOfARejectedMigrationDoNotPoisonTheNextOne() throws Exception {
        Replica r = deploy(config(MF2));
        var next = r.nextMigration();
        try (Source s = new Source(r.config().port())) {
            s.stream(cat(new StreamBytes().be32(Wire.QEVM_MAGIC).be32(4).toBytes()));
            rejected(next, Rule.STREAM_VERSION);
            // the source notices and gives up, but its channels were already on their way
            s.stream(hello(0));
            s.stream(hello(1));
            Thread.sleep(200);
        }
        receivesByteExact(r, MF2, 12);
    }
}
