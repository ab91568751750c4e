package dev.multifdcolo.app.cli;

import dev.multifdcolo.qemu.TestCerts;
import dev.multifdcolo.secondary.net.TlsOptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code receive --tls-*}: the flags make the replica's TLS options, and wrong combinations say why. */
class ReceiveTlsFlagsTest {
    @TempDir
    Path dir;

    ReceiveCommand parse(String... args) {
        ReceiveCommand c = new ReceiveCommand();
        new CommandLine(c).parseArgs(args);
        return c;
    }

    @Test
    void flags() {
        Path s = TestCerts.serverDir(dir);
        String cert = s.resolve("server-cert.pem").toString();
        String key = s.resolve("server-key.pem").toString();
        String ca = s.resolve("ca-cert.pem").toString();
        assertNull(parse("--listen", "127.0.0.1:0", "--out", "o").tls(), "no flag, no TLS");
        TlsOptions t = parse("--listen", "127.0.0.1:0", "--out", "o", "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca).tls();
        assertTrue(t.clientAuthRequired(), "--tls-ca means client certificates are required");
        assertEquals(Path.of(ca), t.ca());
        assertFalse(parse("--listen", "127.0.0.1:0", "--out", "o", "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca,
                "--tls-client-auth", "none").tls().clientAuthRequired());
        TlsOptions p12 = parse("--listen", "127.0.0.1:0", "--out", "o", "--tls-keystore", s.resolve("server.p12").toString(),
                "--tls-password", TestCerts.PASSWORD).tls();
        assertEquals(TestCerts.PASSWORD, p12.password());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> parse("--listen", "127.0.0.1:0", "--out", "o",
                "--tls-ca", ca).tls()).getMessage().contains("need --tls-cert/--tls-key or --tls-keystore"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> parse("--listen", "127.0.0.1:0", "--out", "o",
                "--tls-cert", cert).tls()).getMessage().contains("needs cert and key"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> parse("--listen", "127.0.0.1:0", "--out", "o",
                "--tls-cert", cert, "--tls-key", key, "--tls-client-auth", "required").tls()).getMessage()
                .contains("client-auth required needs ca"));
    }

    /** The whole command: flags that cannot make TLS options end it with exit code 2 and the reason. */
    @Test
    void badFlagsExitWith2() {
        java.io.PrintStream err = System.err;
        java.io.ByteArrayOutputStream buf = new java.io.ByteArrayOutputStream();
        System.setErr(new java.io.PrintStream(buf, true));
        try {
            int rc = new CommandLine(new ReceiveCommand()).execute("--listen", "127.0.0.1:0", "--out", dir.resolve("o").toString(),
                    "--tls-cert", dir.resolve("missing.pem").toString(), "--tls-key", dir.resolve("missing-key.pem").toString());
            assertEquals(2, rc);
        } finally {
            System.setErr(err);
        }
        assertTrue(buf.toString().contains("error: tls: cert file"), buf.toString());
    }
}
