package dev.multifdcolo.secondary;

import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Regressions found by the config fuzzer ({@code fuzz.ConfigFuzzTest}): a replica entry of the
 * wrong JSON type was a ClassCastException / NullPointerException instead of a rejection naming
 * the key, and numbers were silently truncated (max-vmdesc 5G became 1 GiB, multifd-channels
 * 4294967297 became 1, port 4444.5 became 4444).
 */
class ReplicaConfigJsonTest {

    static IllegalArgumentException rejected(String json) {
        return assertThrows(IllegalArgumentException.class, () -> ReplicaConfig.fromJson(new JsonObject(json)), json);
    }

    @Test
    void wrongTypesAreRejectionsNamingTheKey() {
        assertTrue(rejected("{\"name\": 5}").getMessage().contains("name"));
        assertTrue(rejected("{\"name\": \"a\", \"colo\": \"yes\"}").getMessage().contains("colo"));
        assertTrue(rejected("{\"name\": \"a\", \"digest-on-commit\": \"64M\"}").getMessage().contains("digest-on-commit"));
        assertTrue(rejected("{\"name\": \"a\", \"multifd-channels\": \"4\"}").getMessage().contains("multifd-channels"));
        assertTrue(rejected("{\"name\": \"a\", \"listen\": 4444}").getMessage().contains("listen"));
        assertTrue(rejected("{\"name\": \"a\", \"max-ram\": true}").getMessage().contains("max-ram"));
        assertTrue(rejected("{\"name\": \"a\", \"max-ram\": [1]}").getMessage().contains("max-ram"));
        assertTrue(rejected("{\"name\": \"a\", \"flush-mode\": {\"v\": 1}}").getMessage().contains("flush-mode"));
        rejected("{\"name\": \"a\", \"listen\": \"a:b:c\"}");
    }

    @Test
    void numbersAreNeverTruncated() {
        assertTrue(rejected("{\"name\": \"a\", \"max-vmdesc\": \"5G\"}").getMessage().contains("max-vmdesc"));
        assertTrue(rejected("{\"name\": \"a\", \"multifd-channels\": 4294967297}").getMessage().contains("multifd-channels"));
        assertTrue(rejected("{\"name\": \"a\", \"port\": 4444.5}").getMessage().contains("port"));
        assertTrue(rejected("{\"name\": \"a\", \"max-ram\": 1.5}").getMessage().contains("max-ram"));
        assertTrue(rejected("{\"name\": \"a\", \"max-ram\": 1e300}").getMessage().contains("max-ram"));
        assertTrue(rejected("{\"name\": \"a\", \"flush-workers\": 65}").getMessage().contains("flush-workers"));
        assertTrue(rejected("{\"name\": \"a\", \"x-checkpoint-delay\": 9223372036854775807}").getMessage()
                .contains("x-checkpoint-delay"));
    }

    @Test
    void validEntriesStillRead() {
        ReplicaConfig c = ReplicaConfig.fromJson(new JsonObject("""
                {"name": "vm1", "listen": "127.0.0.1:4444", "multifd-channels": 4, "multifd-compression": "zstd",
                 "max-ram": "1G", "max-vmdesc": "16M", "max-device-state": 1048576, "colo": true,
                 "x-checkpoint-delay": 600, "flush-workers": 4.0, "blob-limit": "32M", "listen": null,
                 "uuid": null, "machine": "pc"}"""));
        assertEquals(4, c.multifdChannels());
        assertEquals(1L << 30, c.maxRamBytes());
        assertEquals(16 << 20, c.maxVmdescBytes());
        assertEquals(1 << 20, c.maxDeviceStateBytes());
        assertEquals(1800, c.coloOptions().heartbeatMs());
        assertEquals(4, c.coloOptions().flushWorkers());
        assertEquals(0, c.port());   // "listen": null is the same as no listen
    }
}
