package dev.multifdcolo.qemu;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The qtest client against a scripted fake QEMU (no real QEMU needed). */
class QtestProtocolTest {

    @TempDir
    Path dir;

    @Test
    void skipsIrqLinesChunksBulkTransfersAndReportsFailures() throws Exception {
        byte[] big = Versions.pattern(42, Qtest.WRITE_CHUNK * 2 + 1000);
        ByteArrayOutputStream written = new ByteArrayOutputStream();
        List<String> commands = new ArrayList<>();
        Path socket = dir.resolve("qtest.sock");
        try (FakeUnixServer server = new FakeUnixServer(socket, (in, out) -> {
            String line;
            while ((line = in.readLine()) != null) {
                String[] w = line.split(" ");
                commands.add(w[0] + " " + (w.length > 1 ? w[1] : ""));
                switch (w[0]) {
                    case "readl" -> out.send("IRQ raise 3\nIRQ lower 3\nOK 0x00000000cafebabe\n");
                    case "b64write" -> {
                        byte[] chunk = Base64.getDecoder().decode(w[3]);
                        assertEquals(Long.decode(w[2]).intValue(), chunk.length);
                        written.write(chunk);
                        out.send("OK\n");
                    }
                    case "b64read" -> {
                        int len = Long.decode(w[2]).intValue();
                        int from = (int) (Long.decode(w[1]) - 0x1000);
                        // answer in two TCP segments to exercise line reassembly
                        String b64 = Base64.getEncoder().encodeToString(java.util.Arrays.copyOfRange(big, from, from + len));
                        out.send("OK " + b64.substring(0, b64.length() / 2));
                        out.send(b64.substring(b64.length() / 2) + "\n");
                    }
                    case "memset", "writeb" -> out.send("OK\n");
                    default -> out.send("FAIL Unknown command '" + w[0] + "'\n");
                }
            }
        })) {
            Qtest qt = Qtest.connect(socket, Duration.ofSeconds(5));
            assertEquals(0xcafebabeL, qt.readl(0x10));
            qt.b64write(0x1000, big);
            assertArrayEquals(big, written.toByteArray());
            assertArrayEquals(big, qt.b64read(0x1000, big.length));
            qt.memset(0x0, Qtest.MEMSET_CHUNK + 1, 0x1ff);
            qt.writeb(0x5, 0x1ab);
            QtestException fail = assertThrows(QtestException.class, () -> qt.command("bogus 1"));
            assertEquals("FAIL Unknown command 'bogus'", fail.response());
            qt.close();
            server.awaitDone();
        }
        assertEquals(List.of(
                "readl 0x10",
                "b64write 0x1000", "b64write 0x41000", "b64write 0x81000",
                "b64read 0x1000",
                "memset 0x0", "memset 0x1000000",
                "writeb 0x5",
                "bogus 1"), commands);
    }

    @Test
    void timesOutAndNoticesAClosedConnection() throws Exception {
        Path socket = dir.resolve("slow.sock");
        try (FakeUnixServer server = new FakeUnixServer(socket, (in, out) -> {
            in.readLine();          // never answered
            Thread.sleep(400);
        }); Qtest qt = Qtest.connect(socket, Duration.ofSeconds(5))) {
            qt.setResponseTimeout(Duration.ofMillis(100));
            assertThrows(QemuTimeoutException.class, () -> qt.readl(0));
            // a late answer could be taken for the next command's: refuse further use
            assertThrows(IllegalStateException.class, () -> qt.readl(0));
            server.awaitDone();
        }
        Path socket2 = dir.resolve("gone.sock");
        try (FakeUnixServer server = new FakeUnixServer(socket2, (in, out) -> in.readLine());
             Qtest qt = Qtest.connect(socket2, Duration.ofSeconds(5))) {
            var closed = assertThrows(java.io.UncheckedIOException.class, () -> qt.readl(0));
            assertTrue(closed.getMessage().contains("readl"), closed.getMessage());
            server.awaitDone();
        }
    }
}
