package dev.multifdcolo.secondary.net;

import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.KeyCertOptions;
import io.vertx.core.net.PemKeyCertOptions;
import io.vertx.core.net.PemTrustOptions;
import io.vertx.core.net.PfxOptions;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

/**
 * TLS on a replica's migration port (QEMU's {@code tls-creds} on the destination). The server
 * identity is a PEM certificate chain + key ({@code cert}/{@code key}) or a PKCS12 keystore
 * ({@code keystore}/{@code password}); {@code ca} (PEM, one or more certificates) is what client
 * certificates must chain to. {@code client-auth} is {@code required} (the default once {@code ca}
 * is given: a source without a certificate of that CA is refused in the handshake) or
 * {@code none} (any source that speaks TLS is accepted, like QEMU's {@code verify-peer=off}).
 *
 * @param handshakeTimeoutMs a connection that has not finished its handshake by then is closed
 */
public record TlsOptions(Path cert, Path key, Path keystore, String password, Path ca, boolean clientAuthRequired,
                         long handshakeTimeoutMs) {

    public static final long DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
    /** The keystore password when none is configured. */
    public static final String PASSWORD_ENV = "MULTIFD_COLO_TLS_PASSWORD";
    /** The config keys of the {@code tls} object (also checked for typos). */
    public static final Set<String> KEYS = Set.of("cert", "key", "keystore", "password", "ca", "client-auth",
            "handshake-timeout-ms");
    /**
     * Session timeout of our TLS contexts: above the JDK's 7-day ticket lifetime limit, so the
     * JDK's TLS 1.3 server sends no NewSessionTicket after the handshake (it skips the ticket
     * when the timeout is longer). Why none: a QEMU source never reads its main channel without
     * return-path, nor its multifd channels, so a ticket stays unread in its socket, and closing
     * a socket with unread bytes sends a reset instead of a FIN, which could drop the stream's
     * last bytes on our side (seen: "main channel closed in state footer" right after QEMU
     * reported completed). Sessions are never resumed here. Per context, unlike the JVM-wide
     * {@code jdk.tls.server.newSessionTicketCount}.
     */
    static final long NO_TICKETS_SESSION_TIMEOUT_S = 604_800 + 1;

    /** Checks the combination of keys and that every named file is readable; the message says what is wrong. */
    public TlsOptions {
        if (keystore != null && (cert != null || key != null)) {
            throw new IllegalArgumentException("tls: give either cert + key (PEM) or keystore (PKCS12), not both");
        }
        if (keystore == null && (cert == null || key == null)) {
            throw new IllegalArgumentException("tls: the server identity needs cert and key (PEM) or keystore (PKCS12)");
        }
        if (clientAuthRequired && ca == null) {
            throw new IllegalArgumentException("tls: client-auth required needs ca (the CA that signs the sources' certificates)");
        }
        if (handshakeTimeoutMs <= 0) {
            throw new IllegalArgumentException("tls: handshake-timeout-ms must be > 0");
        }
        readable("cert", cert);
        readable("key", key);
        readable("keystore", keystore);
        readable("ca", ca);
    }

    /** PEM identity; client certificates of {@code ca} required when {@code ca} is not null. */
    public static TlsOptions pem(Path cert, Path key, Path ca) {
        return new TlsOptions(cert, key, null, null, ca, ca != null, DEFAULT_HANDSHAKE_TIMEOUT_MS);
    }

    /** PKCS12 identity; client certificates of {@code ca} required when {@code ca} is not null. */
    public static TlsOptions pkcs12(Path keystore, String password, Path ca) {
        return new TlsOptions(null, null, keystore, password, ca, ca != null, DEFAULT_HANDSHAKE_TIMEOUT_MS);
    }

    public TlsOptions withClientAuth(boolean required) {
        return new TlsOptions(cert, key, keystore, password, ca, required, handshakeTimeoutMs);
    }

    /** {@code required} or {@code none}. */
    public static boolean parseClientAuth(String text) {
        return switch (text) {
            case "required" -> true;
            case "none" -> false;
            default -> throw new IllegalArgumentException("tls: client-auth must be required or none, got '" + text + "'");
        };
    }

    private static void readable(String what, Path p) {
        if (p != null && !(Files.isRegularFile(p) && Files.isReadable(p))) {
            throw new IllegalArgumentException("tls: " + what + " file " + p + " does not exist or is not readable");
        }
    }

    /** The replica's {@code tls} object; null when absent. Unknown keys are rejected. */
    public static TlsOptions fromJson(JsonObject j) {
        if (j == null) {
            return null;
        }
        for (String k : j.fieldNames()) {
            if (!KEYS.contains(k)) {
                throw new IllegalArgumentException("unknown tls key '" + k + "' (known: " + new java.util.TreeSet<>(KEYS) + ")");
            }
        }
        Path ca = path(j, "ca");
        boolean required = j.containsKey("client-auth") ? parseClientAuth(j.getString("client-auth")) : ca != null;
        return new TlsOptions(path(j, "cert"), path(j, "key"), path(j, "keystore"),
                j.getString("password", System.getenv(PASSWORD_ENV)), ca, required,
                j.getLong("handshake-timeout-ms", DEFAULT_HANDSHAKE_TIMEOUT_MS));
    }

    private static Path path(JsonObject j, String k) {
        String s = j.getString(k);
        return s == null || s.isBlank() ? null : Path.of(s);
    }

    /**
     * Loads the key material into a Netty server context (JDK provider; TLS 1.2 and 1.3). Fails
     * with the loader's reason when a file is not what it should be (bad PEM, wrong password).
     */
    public SslContext serverContext(Vertx vertx) {
        try {
            KeyCertOptions identity = keystore != null
                    ? new PfxOptions().setPath(keystore.toString()).setPassword(password)
                    : new PemKeyCertOptions().setCertPath(cert.toString()).setKeyPath(key.toString());
            SslContextBuilder b = SslContextBuilder.forServer(identity.getKeyManagerFactory(vertx))
                    .protocols("TLSv1.3", "TLSv1.2")
                    .sessionTimeout(NO_TICKETS_SESSION_TIMEOUT_S);      // no session tickets, see there
            if (ca != null) {
                b.trustManager(new PemTrustOptions().addCertPath(ca.toString()).getTrustManagerFactory(vertx));
            }
            b.clientAuth(clientAuthRequired ? ClientAuth.REQUIRE : ClientAuth.NONE);
            return b.build();
        } catch (Exception e) {
            String why = e.getMessage() == null ? e.toString() : e.getMessage();
            throw new IllegalArgumentException("tls: cannot load " + (keystore != null ? "keystore " + keystore : cert + " / " + key)
                    + (ca != null ? " / ca " + ca : "") + ": " + why, e);
        }
    }

    @Override
    public String toString() {
        return "tls(" + (keystore != null ? "keystore=" + keystore + (password == null ? "" : " password=***")
                : "cert=" + cert + " key=" + key) + (ca == null ? "" : " ca=" + ca)
                + " client-auth=" + (clientAuthRequired ? "required" : "none")
                + (handshakeTimeoutMs == DEFAULT_HANDSHAKE_TIMEOUT_MS ? "" : " handshake-timeout-ms=" + handshakeTimeoutMs) + ")";
    }
}
