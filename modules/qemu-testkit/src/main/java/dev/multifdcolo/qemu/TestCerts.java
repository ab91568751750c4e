package dev.multifdcolo.qemu;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The committed TLS test certificates ({@code src/scripts/gen-test-certs.sh} regenerates them;
 * test material only, the keys are public): a test CA, a server certificate for
 * 127.0.0.1/localhost, a client certificate of that CA, and a client certificate of another CA.
 * Every PKCS12 file has the password {@link #PASSWORD}.
 *
 * <p>QEMU's {@code tls-creds-x509} reads fixed file names from a directory; {@link #qemuClientDir}
 * lays one out for each kind of client.
 */
public final class TestCerts {
    public static final String PASSWORD = "changeit";

    /** What a QEMU source presents to our listener. */
    public enum Client {
        /** a client certificate signed by the CA our listener trusts */
        GOOD,
        /** no client certificate at all */
        NONE,
        /** a client certificate signed by another CA */
        OTHER_CA
    }

    private TestCerts() {
    }

    /** Copies resource {@code name} (e.g. {@code server-cert.pem}) to {@code dir/as}. */
    public static Path copy(String name, Path dir, String as) {
        try (InputStream in = TestCerts.class.getResourceAsStream("tls/" + name)) {
            if (in == null) {
                throw new IllegalStateException("test certificate resource tls/" + name + " missing");
            }
            Files.createDirectories(dir);
            Path target = dir.resolve(as);
            Files.write(target, in.readAllBytes());
            return target;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Copies resource {@code name} into {@code dir} under the same name. */
    public static Path copy(String name, Path dir) {
        return copy(name, dir, name);
    }

    /**
     * Our listener's side: {@code server-cert.pem}, {@code server-key.pem}, {@code server.p12},
     * {@code ca-cert.pem} (the CA whose client certificates it accepts) in {@code dir}.
     */
    public static Path serverDir(Path dir) {
        for (String f : new String[]{"server-cert.pem", "server-key.pem", "server.p12", "ca-cert.pem"}) {
            copy(f, dir);
        }
        return dir;
    }

    /**
     * A directory for QEMU's {@code -object tls-creds-x509,endpoint=client,dir=...}: always
     * {@code ca-cert.pem} (to verify our server); plus {@code client-cert.pem} /
     * {@code client-key.pem} unless {@link Client#NONE}. For {@link Client#OTHER_CA} the file
     * {@code ca-cert.pem} also holds the other CA, because QEMU checks its own client certificate
     * against {@code ca-cert.pem} when the object is created.
     */
    public static Path qemuClientDir(Path dir, Client kind) {
        try {
            Files.createDirectories(dir);
            copy("ca-cert.pem", dir);
            switch (kind) {
                case GOOD -> {
                    copy("client-cert.pem", dir);
                    copy("client-key.pem", dir);
                }
                case NONE -> { }
                case OTHER_CA -> {
                    Path other = copy("rogue-ca-cert.pem", dir);
                    Files.writeString(dir.resolve("ca-cert.pem"), Files.readString(other),
                            java.nio.file.StandardOpenOption.APPEND);
                    Files.delete(other);
                    copy("rogue-client-cert.pem", dir, "client-cert.pem");
                    copy("rogue-client-key.pem", dir, "client-key.pem");
                }
            }
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
