package dev.multifdcolo.app.export;

import dev.multifdcolo.app.Transports;
import dev.multifdcolo.app.cli.ExportCommand;
import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.primary.SenderConfig;
import dev.multifdcolo.primary.export.ExportImage;
import dev.multifdcolo.primary.export.Exporter;
import dev.multifdcolo.secondary.ImageWriter;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.wire.Framing;
import dev.multifdcolo.wire.encode.NoneMachine;
import dev.multifdcolo.wire.encode.StreamWriter;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import picocli.CommandLine;

import java.io.OutputStream;
import java.lang.foreign.ValueLayout;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Export streams read back by our own receiver (no QEMU needed): file and live, plain and multifd. */
class ExportRoundTripTest {
    static Vertx vertx;

    @BeforeAll
    static void start() {
        vertx = Transports.vertx("auto", new VertxOptions().setEventLoopPoolSize(2));
    }

    @AfterAll
    static void stop() {
        vertx.close().await();
    }

    /** Two blocks of seeded content with zero pages; NoneMachine's sections as the receiver keeps them (no EOF). */
    static GuestMemory image(long seed) throws Exception {
        GuestMemory m = GuestMemory.allocate(List.of(new BlockSpec("pc.ram", 4L << 20), new BlockSpec("pc.bios", 64L << 10)),
                Long.MAX_VALUE, Backing.anonymous());
        Random rnd = new Random(seed);
        byte[] page = new byte[4096];
        for (RamBlock b : m.blocks()) {
            for (long off = 0; off < b.length(); off += 4096) {
                if (rnd.nextInt(3) == 0) {
                    continue; // zero page
                }
                rnd.nextBytes(page);
                java.lang.foreign.MemorySegment.copy(page, 0, b.guest(), ValueLayout.JAVA_BYTE, off, page.length);
            }
        }
        return m;
    }

    static byte[] devices() throws Exception {
        StreamWriter w = StreamWriter.buffered(1024);
        NoneMachine.of(NoneMachine.Flavor.QEMU_11_1).writeDeviceSections(w);
        return w.toByteArray();
    }

    static String vmdesc() {
        return NoneMachine.of(NoneMachine.Flavor.QEMU_11_1).vmdescJson("none");
    }

    static Replica receiver(int channels) throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Replica r = new Replica(ReplicaConfig.defaults("export-rt", "127.0.0.1", port).withMultifd(channels));
        r.deploy(vertx, 2).await();
        return r;
    }

    static void assertSame(GuestMemory want, MigrationResult got, byte[] devices) {
        for (RamBlock b : want.blocks()) {
            assertArrayEquals(b.guest().toArray(ValueLayout.JAVA_BYTE),
                    got.memory().block(b.name()).guest().toArray(ValueLayout.JAVA_BYTE), b.name());
        }
        assertEquals(want.digest(), got.memory().digest());
        assertEquals("none", got.machine());
        assertArrayEquals(devices, got.deviceState(), "device sections arrive verbatim");
        assertEquals(vmdesc(), got.vmdesc());
    }

    @Test
    void eofIsAppendedOnlyWhenMissing() throws Exception {
        byte[] dev = devices();
        byte[] withEof = ExportImage.withEof(dev);
        assertEquals(dev.length + 1, withEof.length);
        assertEquals(0, withEof[withEof.length - 1]);
        assertArrayEquals(withEof, ExportImage.withEof(withEof), "a COLO blob already ends with EOF");
        assertArrayEquals(new byte[] {0}, ExportImage.withEof(new byte[0]));
        assertThrows(IllegalArgumentException.class, () -> ExportImage.withEof(new byte[] {1, 2, 3, 4, 5, 6, 7}));
    }

    /** export --out: the file, written to our receiver's socket like {@code exec:cat FILE} into QEMU. */
    @Test
    void fileStreamThroughTheCliLoadsInOurReceiver(@TempDir Path dir) throws Exception {
        byte[] dev = devices();
        try (GuestMemory mem = image(1)) {
            // an image directory as the receiver writes it (from a received migration), then the CLI
            Replica first = receiver(0);
            var received = first.nextMigration();
            Exporter.live(ExportImage.of("none", mem, dev, vmdesc(), -1),
                    SenderConfig.builder("127.0.0.1", first.config().port()).build());
            MigrationResult src = received.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
            try (GuestMemory sm = src.memory()) {
                ImageWriter.write(src, dir.resolve("image"));
            }
            Path out = dir.resolve("vm.mig");
            assertEquals(0, new CommandLine(new ExportCommand()).execute("--image", dir.resolve("image").toString(),
                    "--out", out.toString()));
            Replica r = receiver(0);
            var next = r.nextMigration();
            try (Socket s = new Socket("127.0.0.1", r.config().port()); OutputStream os = s.getOutputStream()) {
                os.write(Files.readAllBytes(out));
                os.flush();
                MigrationResult got = next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
                try (GuestMemory gm = got.memory()) {
                    assertSame(mem, got, dev);
                }
            }
            assertEquals(2, new CommandLine(new ExportCommand()).execute("--image", dir.toString(), "--out", out.toString()),
                    "not an image directory");
            // --out -: the same stream on standard output (for -incoming "exec:... export --out -")
            java.io.PrintStream saved = System.out;
            java.io.ByteArrayOutputStream captured = new java.io.ByteArrayOutputStream();
            int rc;
            try {
                System.setOut(new java.io.PrintStream(captured, false));
                rc = new CommandLine(new ExportCommand()).execute("--image", dir.resolve("image").toString(), "--out", "-");
            } finally {
                System.setOut(saved);
            }
            assertEquals(0, rc);
            assertArrayEquals(Files.readAllBytes(out), captured.toByteArray(), "stdout carries exactly the stream");
        }
    }

    @ParameterizedTest(name = "live export, multifd {0}")
    @ValueSource(ints = {0, 2})
    void liveExportLoadsInOurReceiver(int channels) throws Exception {
        byte[] dev = devices();
        try (GuestMemory mem = image(2 + channels)) {
            Replica r = receiver(channels);
            var next = r.nextMigration();
            ExportImage img = ExportImage.of("none", mem, dev, vmdesc(), -1);
            var st = Exporter.live(img, SenderConfig.builder("127.0.0.1", r.config().port()).framing(Framing.MODERN)
                    .multifd(channels).returnPath(true).machine("ignored").build());
            MigrationResult got = next.toCompletionStage().toCompletableFuture().get(20, TimeUnit.SECONDS);
            try (GuestMemory gm = got.memory()) {
                assertSame(mem, got, dev);
                assertNull(got.colo());
            }
            assertEquals(mem.blocks().stream().mapToLong(RamBlock::pages).sum(), st.normalPages() + st.zeroPages());
        }
    }
}
