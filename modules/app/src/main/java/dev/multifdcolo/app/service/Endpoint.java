package dev.multifdcolo.app.service;

import io.vertx.core.json.JsonObject;

import java.net.InetAddress;
import java.net.UnknownHostException;

/**
 * An HTTP listener of the service (metrics or control API): {@code {enabled, host, port}}.
 * Loopback by default; {@link #loopback()} tells whether it is reachable from elsewhere.
 */
public record Endpoint(boolean enabled, String host, int port) {
    public Endpoint {
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be 0..65535, got " + port);
        }
        if (host == null || host.isBlank()) {
            throw new IllegalArgumentException("host must not be empty");
        }
    }

    static Endpoint from(JsonObject j, String what, int defaultPort, java.util.Set<String> extraKeys) {
        if (j == null) {
            return new Endpoint(true, "127.0.0.1", defaultPort);
        }
        for (String k : j.fieldNames()) {
            if (!k.equals("enabled") && !k.equals("host") && !k.equals("port") && !extraKeys.contains(k)) {
                throw new IllegalArgumentException("unknown " + what + " key '" + k + "'");
            }
        }
        return new Endpoint(j.getBoolean("enabled", true), j.getString("host", "127.0.0.1"),
                j.getInteger("port", defaultPort));
    }

    /** True when bound to a loopback address only. */
    public boolean loopback() {
        try {
            return InetAddress.getByName(host).isLoopbackAddress();
        } catch (UnknownHostException e) {
            return false;
        }
    }
}
