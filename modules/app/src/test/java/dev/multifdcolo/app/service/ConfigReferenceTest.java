package dev.multifdcolo.app.service;

import dev.multifdcolo.app.ServiceVerticle;
import dev.multifdcolo.secondary.ReplicaConfig;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The README's configuration reference (the key tables under "Service configuration" and
 * "Operating the service", and its TLS table) documents exactly the keys the code accepts: every
 * replica key of {@link ReplicaConfig#KEYS}, every top-level key of {@link ServiceVerticle#KEYS},
 * every key of a replica's {@code tls} object, and no key the code would reject.
 */
class ConfigReferenceTest {
    static final Pattern ROW = Pattern.compile("^\\| `([a-z\\[\\]._-]+)`", Pattern.MULTILINE);

    @Test
    void readmeTablesListExactlyTheAcceptedKeys() throws Exception {
        Path readme = Path.of("../../README.md");
        assertTrue(Files.exists(readme), "README at " + readme.toAbsolutePath());
        String text = Files.readString(readme);
        int from = text.indexOf("## Service configuration");
        int tls = text.indexOf("### TLS", from);
        int to = text.indexOf("### Metrics", tls);
        assertTrue(from >= 0 && tls > from && to > tls, "the README's configuration sections");
        // the TLS section's table: the keys of a replica's tls object, several per row
        Set<String> tlsKeys = new TreeSet<>();
        Matcher row = Pattern.compile("^\\| (`[a-z-]+`(?:, `[a-z-]+`)*) \\|", Pattern.MULTILINE).matcher(text.substring(tls, to));
        while (row.find()) {
            for (String k : row.group(1).split(", ")) {
                tlsKeys.add(k.replace("`", ""));
            }
        }
        assertEquals(new TreeSet<>(dev.multifdcolo.secondary.net.TlsOptions.KEYS), tlsKeys, "tls keys: README vs TlsOptions.KEYS");
        Set<String> replica = new TreeSet<>();
        Set<String> top = new TreeSet<>();
        Matcher m = ROW.matcher(text.substring(from, tls));
        while (m.find()) {
            String key = m.group(1);
            if (key.startsWith("replicas[].")) {
                replica.add(key.substring("replicas[].".length()));
            } else {
                top.add(key.contains(".") ? key.substring(0, key.indexOf('.')) : key);
            }
        }
        top.add("replicas");
        assertEquals(new TreeSet<>(ReplicaConfig.KEYS), replica, "replica keys: README vs ReplicaConfig.KEYS");
        assertEquals(new TreeSet<>(ServiceVerticle.KEYS), top, "top-level keys: README vs ServiceVerticle.KEYS");
    }
}
