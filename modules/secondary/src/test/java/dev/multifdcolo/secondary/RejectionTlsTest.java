package dev.multifdcolo.secondary;

import dev.multifdcolo.qemu.TestCerts;
import dev.multifdcolo.secondary.RejectionRig.Rejects;
import dev.multifdcolo.secondary.net.Connection;
import dev.multifdcolo.secondary.net.TlsOptions;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.Rule;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.foreign.ValueLayout;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import static dev.multifdcolo.secondary.RejectionNetworkTest.await;
import static dev.multifdcolo.secondary.RejectionNetworkTest.rejected;
import static dev.multifdcolo.secondary.RejectionNetworkTest.says;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * TLS on a replica port, with real TLS clients (JSSE) playing real QEMU captures: images arrive
 * byte-exact through the SslHandler; channels are classified by the order their handshakes
 * finish; a client without a valid certificate, or one that does not speak TLS, is refused in the
 * handshake (logged with its address, counted as {@code tls-handshake}) and the replica goes on;
 * a channel in the wrong place of the order is a named {@code channel-order} rejection.
 */
class RejectionTlsTest {
    static Vertx vertx;
    @TempDir
    static Path certs;
    static final Captures PLAIN72 = Captures.all().get(0);
    static final Captures MF2_72 = Captures.all().get(1);
    static final Captures MF4_111 = Captures.all().get(6);
    static final List<String> LOG = new CopyOnWriteArrayList<>();
    /** Held: JUL keeps loggers only weakly, and a collected one would lose the capture handler. */
    static final Logger CONNECTION_LOG = Logger.getLogger(Connection.class.getName());
    static final Handler CAPTURE = new Handler() {
        @Override
        public void publish(LogRecord r) {
            LOG.add(r.getMessage());
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };
    final ExecutorService pool = Executors.newCachedThreadPool();

    @BeforeAll
    static void start() {
        TestCerts.serverDir(certs);
        for (String f : new String[]{"client.p12", "rogue-client.p12"}) {
            TestCerts.copy(f, certs);
        }
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(4));
        CONNECTION_LOG.addHandler(CAPTURE);
    }

    @AfterAll
    static void stop() {
        CONNECTION_LOG.removeHandler(CAPTURE);
        vertx.close().await();
    }

    static TlsOptions serverTls() {
        return TlsOptions.pem(certs.resolve("server-cert.pem"), certs.resolve("server-key.pem"), certs.resolve("ca-cert.pem"));
    }

    static Replica deploy(Captures c, TlsOptions tls) throws IOException {
        Replica r = new Replica(c.config("127.0.0.1", Replay.freePort()).withTls(tls));
        r.deploy(vertx, 3).await();
        return r;
    }

    // ------------------------------------------------------------------ a TLS source

    /** Client identity: client.p12 (our CA), rogue-client.p12 (another CA) or none. */
    static SSLContext client(String p12) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = Files.newInputStream(certs.resolve("ca-cert.pem"))) {
            trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        KeyManagerFactory kmf = null;
        if (p12 != null) {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (InputStream in = Files.newInputStream(certs.resolve(p12))) {
                ks.load(in, TestCerts.PASSWORD.toCharArray());
            }
            kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, TestCerts.PASSWORD.toCharArray());
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf == null ? null : new javax.net.ssl.KeyManager[]{alwaysPresent((javax.net.ssl.X509KeyManager) kmf.getKeyManagers()[0])},
                tmf.getTrustManagers(), null);
        return ctx;
    }

    /**
     * Presents the client certificate even when the server asks for another CA (JSSE would
     * otherwise send none, and the "certificate of another CA" case would test nothing new).
     */
    static javax.net.ssl.X509KeyManager alwaysPresent(javax.net.ssl.X509KeyManager km) {
        return new javax.net.ssl.X509ExtendedKeyManager() {
            @Override
            public String[] getClientAliases(String keyType, java.security.Principal[] issuers) {
                return km.getClientAliases(keyType, null);
            }

            @Override
            public String chooseClientAlias(String[] keyType, java.security.Principal[] issuers, Socket socket) {
                return km.chooseClientAlias(keyType, null, socket);
            }

            @Override
            public String[] getServerAliases(String keyType, java.security.Principal[] issuers) {
                return km.getServerAliases(keyType, issuers);
            }

            @Override
            public String chooseServerAlias(String keyType, java.security.Principal[] issuers, Socket socket) {
                return km.chooseServerAlias(keyType, issuers, socket);
            }

            @Override
            public java.security.cert.X509Certificate[] getCertificateChain(String alias) {
                return km.getCertificateChain(alias);
            }

            @Override
            public java.security.PrivateKey getPrivateKey(String alias) {
                return km.getPrivateKey(alias);
            }
        };
    }

    /** Connects and finishes the handshake (the server's name is checked against 127.0.0.1 too). */
    static SSLSocket tls(SSLContext ctx, int port) throws IOException {
        SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket();
        s.setTcpNoDelay(true);
        s.connect(new InetSocketAddress("127.0.0.1", port));
        SSLParameters p = s.getSSLParameters();
        p.setEndpointIdentificationAlgorithm("HTTPS");
        s.setSSLParameters(p);
        s.startHandshake();
        return s;
    }

    /** Writes {@code data} from a pool thread; a receiver that closed the connection ends the write quietly. */
    CompletableFuture<Void> write(Socket s, byte[] data) {
        return CompletableFuture.runAsync(() -> {
            try {
                OutputStream out = s.getOutputStream();
                for (int pos = 0; pos < data.length; pos += 65536) {
                    out.write(data, pos, Math.min(65536, data.length - pos));
                }
                out.flush();
            } catch (IOException ignored) {
                // closed by the receiver
            }
        }, pool);
    }

    /**
     * A whole capture over TLS: the main channel's handshake first (its place in the order is
     * taken once the replica has a session), then the multifd channels, every stream written
     * concurrently; the image must equal the source's RAM.
     */
    void migrate(Replica r, Captures c, SSLContext ctx) throws Exception {
        var next = r.nextMigration();
        List<Socket> open = new ArrayList<>();
        try {
            SSLSocket main = tls(ctx, r.config().port());
            open.add(main);
            await(() -> r.current() != null && !r.current().finished(), "the main channel's place in the order");
            List<CompletableFuture<Void>> writes = new ArrayList<>();
            writes.add(write(main, c.mainBytes()));
            for (byte[] ch : c.channelBytes()) {
                SSLSocket s = tls(ctx, r.config().port());
                open.add(s);
                writes.add(write(s, ch));
            }
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
            CompletableFuture.allOf(writes.toArray(CompletableFuture[]::new)).get(10, TimeUnit.SECONDS);
            assertArrayEquals(c.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE),
                    c.name() + " over TLS");
            if (!c.channels().isEmpty()) {
                assertTrue(res.stats().packets.sum() > 0, "pages came over the multifd channels");
            }
            res.memory().close();
        } finally {
            closeAll(open);
        }
    }

    static void closeAll(List<? extends Socket> sockets) {
        for (Socket s : sockets) {
            try {
                s.close();
            } catch (IOException ignored) {
                // best effort
            }
        }
    }

    /** Reads until the peer closes (or resets); true when it did within 10 s. */
    static boolean closedByPeer(Socket s) {
        try {
            s.setSoTimeout(10_000);
            InputStream in = s.getInputStream();
            while (in.read() >= 0) {
                // drain
            }
            return true;
        } catch (java.net.SocketTimeoutException e) {
            return false;
        } catch (IOException e) {
            return true;      // an alert or a reset: closed
        }
    }

    // ------------------------------------------------------------------ tests

    @Test
    void capturesArriveByteExactOverTls() throws Exception {
        SSLContext good = client("client.p12");
        Replica r72 = deploy(MF2_72, serverTls());
        migrate(r72, MF2_72, good);
        migrate(r72, MF2_72, good);          // the port keeps serving: a second migration
        Replica r111 = deploy(MF4_111, serverTls());
        migrate(r111, MF4_111, good);
        // PKCS12 identity instead of PEM, plain (no multifd)
        Replica plain = deploy(PLAIN72, TlsOptions.pkcs12(certs.resolve("server.p12"), TestCerts.PASSWORD,
                certs.resolve("ca-cert.pem")));
        migrate(plain, PLAIN72, good);
        assertEquals(2, r72.completed());
        assertEquals(0, r72.rejections(Rule.TLS_HANDSHAKE) + r111.rejections(Rule.TLS_HANDSHAKE));
    }

    @Test
    @Rejects(Rule.TLS_HANDSHAKE)
    void clientsWithoutAValidCertificateAreRefusedInTheHandshake() throws Exception {
        Replica r = deploy(MF2_72, serverTls());
        int port = r.config().port();
        LOG.clear();
        // 1. no client certificate; 2. a certificate of another CA. Under TLS 1.3 the client may
        // finish its side before the server has checked its certificate: the refusal then shows
        // as an alert or a close on the first read.
        for (String identity : new String[]{null, "rogue-client.p12"}) {
            SSLContext ctx = client(identity);
            try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket("127.0.0.1", port)) {
                try {
                    s.startHandshake();
                    s.getOutputStream().write(MF2_72.mainBytes(), 0, 4096);
                    s.getOutputStream().flush();
                } catch (IOException expected) {
                    // refused during the handshake
                }
                assertTrue(closedByPeer(s), "the receiver closed the connection of " + identity);
            }
        }
        // 3. not TLS at all: a plain QEVM stream
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.getOutputStream().write(Arrays.copyOf(MF2_72.mainBytes(), 4096));
            assertTrue(closedByPeer(s), "the receiver closed the plain connection");
        }
        await(() -> r.rejections(Rule.TLS_HANDSHAKE) == 3, "3 handshake rejections counted");
        assertNull(r.current(), "no refused connection started a session");
        List<String> lines = LOG.stream().filter(l -> l.contains("TLS handshake from 127.0.0.1:")).toList();
        assertEquals(3, lines.size(), "one log line per refused handshake: " + LOG);
        for (String l : lines) {
            assertTrue(l.startsWith(r.name() + ": tls-handshake: TLS handshake from 127.0.0.1:") && l.contains(" failed: "), l);
        }
        assertTrue(lines.get(0).contains("Empty client certificate chain"), "no certificate: " + lines.get(0));
        assertTrue(lines.get(1).contains("PKIX path building failed"), "another CA: " + lines.get(1));
        assertTrue(lines.get(2).contains("not a TLS client (its first bytes: 5145564d"), "plain TCP: " + lines.get(2));
        // the replica goes on: a good source migrates
        migrate(r, MF2_72, client("client.p12"));
        assertEquals(1, r.completed());
        assertEquals(0, r.failed());
    }

    @Test
    @Rejects(Rule.CHANNEL_ORDER)
    void aChannelInTheWrongPlaceOfTheOrderIsNamed() throws Exception {
        SSLContext good = client("client.p12");
        Replica r = deploy(MF2_72, serverTls());
        int port = r.config().port();
        // a multifd hello on the first connection to finish its handshake
        var next = r.nextMigration();
        try (SSLSocket first = tls(good, port)) {
            write(first, MF2_72.channelBytes().get(0)).get(10, TimeUnit.SECONDS);
            says(rejected(next, Rule.CHANNEL_ORDER), "is the main channel by order", "starts with the multifd magic, not QEVM");
            assertTrue(closedByPeer(first));
        }
        // QEVM on a later connection (the main channel already has its place)
        var next2 = r.nextMigration();
        try (SSLSocket main = tls(good, port)) {
            await(() -> r.current() != null && !r.current().finished(), "the main channel's place");
            write(main, Arrays.copyOf(MF2_72.mainBytes(), 100)).get(10, TimeUnit.SECONDS);
            try (SSLSocket second = tls(good, port)) {
                write(second, Arrays.copyOf(MF2_72.mainBytes(), 100)).get(10, TimeUnit.SECONDS);
                says(rejected(next2, Rule.CHANNEL_ORDER), "is a multifd channel by order", "starts with QEVM");
                assertTrue(closedByPeer(second));
                assertTrue(closedByPeer(main), "the whole migration is ended");
            }
        }
        assertEquals(2, r.rejections(Rule.CHANNEL_ORDER));
        migrate(r, MF2_72, good);
        assertEquals(1, r.completed());
    }

    /**
     * The order is the accept order among authenticated connections, not the order in which
     * handshakes finish: the main channel accepted first but finishing its handshake after a
     * multifd channel is still the main channel.
     */
    @Test
    void theOrderIsTheAcceptOrderNotTheHandshakeOrder() throws Exception {
        SSLContext good = client("client.p12");
        Replica r = deploy(MF2_72, serverTls());
        int port = r.config().port();
        var next = r.nextMigration();
        List<Socket> open = new ArrayList<>();
        try {
            Socket tcp = new Socket("127.0.0.1", port);        // the main channel: accepted first ...
            open.add(tcp);
            await(() -> r.tlsHandshaking() == 1, "the first connection registered");
            SSLSocket ch1 = tls(good, port);                   // ... a multifd channel finishes its handshake first
            open.add(ch1);
            CompletableFuture<Void> w1 = write(ch1, MF2_72.channelBytes().get(0));
            Thread.sleep(100);
            assertNull(r.current(), "nothing is placed while an earlier accept is still in its handshake");
            SSLSocket main = (SSLSocket) good.getSocketFactory().createSocket(tcp, "127.0.0.1", port, true);
            open.add(main);
            main.startHandshake();
            CompletableFuture<Void> w0 = write(main, MF2_72.mainBytes());
            SSLSocket ch2 = tls(good, port);
            open.add(ch2);
            CompletableFuture<Void> w2 = write(ch2, MF2_72.channelBytes().get(1));
            MigrationResult res = next.toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
            CompletableFuture.allOf(w0, w1, w2).get(10, TimeUnit.SECONDS);
            assertArrayEquals(MF2_72.expectedRam(), res.memory().block("ram").guest().toArray(ValueLayout.JAVA_BYTE));
            res.memory().close();
        } finally {
            closeAll(open);
        }
        assertEquals(0, r.rejections(Rule.CHANNEL_ORDER));
    }

    /**
     * A connection accepted first that never finishes its handshake takes no place: it holds
     * back the choice of the main channel until its handshake times out, then the migration
     * behind it goes on.
     */
    @Test
    void aStalledHandshakeTakesNoPlace() throws Exception {
        Replica r = deploy(MF2_72, new TlsOptions(certs.resolve("server-cert.pem"), certs.resolve("server-key.pem"), null,
                null, certs.resolve("ca-cert.pem"), true, 500));
        LOG.clear();
        try (Socket idle = new Socket("127.0.0.1", r.config().port())) {
            await(() -> r.tlsHandshaking() == 1, "the idle connection registered");   // no ClientHello ever
            long t0 = System.nanoTime();
            migrate(r, MF2_72, client("client.p12"));
            assertTrue(closedByPeer(idle), "the stalled connection was closed");
            assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(10));
        }
        assertEquals(1, r.completed());
        assertEquals(1, r.rejections(Rule.TLS_HANDSHAKE));
        assertTrue(LOG.stream().anyMatch(l -> l.contains("failed: no complete handshake in time")), LOG.toString());
    }

    @Test
    @Rejects(Rule.CHANNEL_CLOSED)
    void aChannelThatClosesBeforeItsFirstBytesEndsTheMigration() throws Exception {
        Replica r = deploy(MF2_72, serverTls());
        var next = r.nextMigration();
        SSLSocket main = tls(client("client.p12"), r.config().port());
        await(() -> r.current() != null, "the main channel's place");
        main.close();
        says(rejected(next, Rule.CHANNEL_CLOSED), "the main channel by order) closed before sending its first bytes");
        migrate(r, MF2_72, client("client.p12"));
    }

    @Test
    void badTlsConfigurationIsRefusedWithItsReason() throws IOException {
        Path missing = certs.resolve("nope.pem");
        says(assertThrows(IllegalArgumentException.class, () -> TlsOptions.pem(missing, certs.resolve("server-key.pem"), null)),
                "tls: cert file", "nope.pem does not exist");
        says(assertThrows(IllegalArgumentException.class, () -> TlsOptions.pem(certs.resolve("server-cert.pem"),
                certs.resolve("server-key.pem"), null).withClientAuth(true)), "client-auth required needs ca");
        // a file that exists but is no certificate: the replica does not start, and says why
        Path garbage = Files.writeString(certs.resolve("garbage.pem"), "not a certificate");
        Replica r = new Replica(PLAIN72.config("127.0.0.1", Replay.freePort())
                .withTls(TlsOptions.pem(garbage, certs.resolve("server-key.pem"), null)));
        Future<?> f = r.deploy(vertx, 1);
        Throwable t = assertThrows(Exception.class, () -> f.await());
        says(new Exception(String.valueOf(t.getMessage())), "tls: cannot load", "garbage.pem");
        // wrong keystore password
        Replica r2 = new Replica(PLAIN72.config("127.0.0.1", Replay.freePort())
                .withTls(TlsOptions.pkcs12(certs.resolve("server.p12"), "wrong", null)));
        Throwable t2 = assertThrows(Exception.class, () -> r2.deploy(vertx, 1).await());
        says(new Exception(String.valueOf(t2.getMessage())), "tls: cannot load keystore");
    }

    @Test
    void configKeys() {
        var j = new io.vertx.core.json.JsonObject().put("name", "vm1").put("listen", "127.0.0.1:0")
                .put("tls", new io.vertx.core.json.JsonObject().put("cert", certs.resolve("server-cert.pem").toString())
                        .put("key", certs.resolve("server-key.pem").toString()).put("ca", certs.resolve("ca-cert.pem").toString()));
        ReplicaConfig c = ReplicaConfig.fromJson(j);
        assertTrue(c.tls().clientAuthRequired(), "a ca means client certificates are required");
        j.getJsonObject("tls").put("client-auth", "none");
        assertTrue(!ReplicaConfig.fromJson(j).tls().clientAuthRequired());
        j.getJsonObject("tls").put("client-auth", "maybe");
        says(assertThrows(IllegalArgumentException.class, () -> ReplicaConfig.fromJson(j)), "replica vm1: tls: client-auth must be");
        j.getJsonObject("tls").remove("client-auth");
        j.getJsonObject("tls").put("certificate", "x");
        says(assertThrows(IllegalArgumentException.class, () -> ReplicaConfig.fromJson(j)), "unknown tls key 'certificate'");
        j.getJsonObject("tls").remove("certificate");
        j.getJsonObject("tls").put("ca", "/nonexistent/ca.pem");
        says(assertThrows(IllegalArgumentException.class, () -> ReplicaConfig.fromJson(j)),
                "replica vm1: tls: ca file /nonexistent/ca.pem does not exist");
        ReplicaConfig ks = ReplicaConfig.fromJson(new io.vertx.core.json.JsonObject().put("name", "vm2")
                .put("tls", new io.vertx.core.json.JsonObject().put("keystore", certs.resolve("server.p12").toString())
                        .put("password", "secret")));
        assertTrue(!ks.toString().contains("secret") && ks.toString().contains("password=***"), ks.toString());
        assertEquals(Compression.NONE, ks.compression());
    }
}
