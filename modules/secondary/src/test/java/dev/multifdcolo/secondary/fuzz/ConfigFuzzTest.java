package dev.multifdcolo.secondary.fuzz;

import dev.multifdcolo.secondary.ReplicaConfig;
import dev.multifdcolo.secondary.Sizes;
import dev.multifdcolo.secondary.fuzz.Fuzz.End;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import net.jqwik.api.AfterFailureMode;
import net.jqwik.api.EdgeCasesMode;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.ShrinkingMode;
import net.jqwik.api.lifecycle.AddLifecycleHook;
import net.jqwik.api.lifecycle.PropagationMode;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Fuzzing of a replica's configuration (the objects of {@code replicas:} as the Vert.x config store
 * hands them over from the YAML or JSON file) into {@link ReplicaConfig#fromJson}. Mutations are
 * structural (a key set to a value of any JSON type, sizes and numbers at their edges, keys removed
 * or unknown) or textual (bytes of the JSON text mutated, then parsed as the store would).
 *
 * <p>Per input: the only exception is an {@link IllegalArgumentException} with a message (the
 * service logs it and keeps the previous configuration); an accepted configuration holds the
 * values written, within their ranges: no silent truncation or wrap-around of a number or size.
 */
@AddLifecycleHook(value = Fuzz.Tries.class, propagateTo = PropagationMode.DIRECT_DESCENDANTS)
class ConfigFuzzTest {

    static final List<JsonObject> SEEDS = List.of(
            new JsonObject("""
                    {"name": "vm1", "listen": "127.0.0.1:4444", "multifd-channels": 4, "multifd-compression": "zstd",
                     "flush-mode": "auto", "uuid": "12345678-1234-5678-1234-567812345678", "max-ram": "1G",
                     "max-device-state": "64M", "max-vmdesc": "16M", "machine": "pc-i440fx-7.2"}"""),
            new JsonObject("""
                    {"name": "colo1", "host": "0.0.0.0", "port": 4445, "colo": true, "x-checkpoint-delay": 600,
                     "heartbeat-timeout-ms": 3000, "flush-workers": 4, "blob-limit": "32M", "digest-on-commit": true,
                     "backing-dir": "/var/tmp/colo1", "multifd-channels": 2, "flush-mode": "legacy"}"""),
            new JsonObject("""
                    {"name": "plain", "listen": "[::1]:0", "max-ram": 68719476736, "multifd-compression": "none"}"""),
            new JsonObject("{\"name\": \"min\"}"));

    static final String[] KEYS = {"name", "listen", "host", "port", "multifd-channels", "flush-mode", "multifd-compression",
            "uuid", "max-ram", "backing-dir", "max-device-state", "max-vmdesc", "machine", "colo", "x-checkpoint-delay",
            "heartbeat-timeout-ms", "flush-workers", "blob-limit", "digest-on-commit", "bogus", "Name", "max_ram"};

    static final Object[] VALUES = {"", " ", "0", "1", "-1", "64M", "1G", "4G", "5G", "2G", "2047M", "16T", "9999999999T",
            "1K", "1KiB", "64MB", "0x10", "1e3", "abc", "auto", "legacy", "modern", "AUTO", " zstd", "zlib", "none", "lz4",
            "127.0.0.1:4444", "[::1]:70000", ":80", "host:", "a:b:c", "127.0.0.1:-1", "127.0.0.1:99999999999",
            "00000000-0000-0000-0000-000000000000", "not-a-uuid", "gggggggggggggggggggggggggggggggg",
            "12345678123456781234567812345678", "x".repeat(300),
            0, 1, -1, 2, 4, 64, 255, 256, 65535, 65536, Integer.MAX_VALUE, Integer.MIN_VALUE, 2147483648L, 4294967297L,
            Long.MAX_VALUE, Long.MIN_VALUE, 1L << 31, 1L << 40, 1.5, 4.0, -0.0, 1e300, Double.NaN,
            true, false, null, "true"};

    @Property(shrinking = ShrinkingMode.OFF, edgeCases = EdgeCasesMode.NONE, afterFailure = AfterFailureMode.RANDOM_SEED)
    @FuzzTarget(name = "replica config", share = 0.05)
    void replicaConfig(@ForAll long generated) {
        long seed = Fuzz.input(generated);
        SplittableRandom r = new SplittableRandom(seed);
        Fuzz.next();
        JsonObject j = SEEDS.get(r.nextInt(SEEDS.size())).copy();
        int ops = 1 + r.nextInt(3);
        for (int i = 0; i < ops; i++) {
            String k = KEYS[r.nextInt(KEYS.length)];
            switch (r.nextInt(6)) {
                case 0 -> j.remove(k);
                case 1 -> j.put(k, new JsonArray().add(VALUES[r.nextInt(VALUES.length)]));
                case 2 -> j.put(k, new JsonObject().put("v", VALUES[r.nextInt(VALUES.length)]));
                default -> j.put(k, VALUES[r.nextInt(VALUES.length)]);
            }
        }
        String text = j.encode();
        boolean textual = r.nextInt(4) == 0;
        if (textual) {
            byte[] t = new Mutator(r).mutate(text.getBytes(StandardCharsets.UTF_8), text.getBytes(StandardCharsets.UTF_8));
            text = new String(t, StandardCharsets.UTF_8);
        }
        String in = text;
        Fuzz.input("replica config [input " + seed + "L]: " + abbreviate(in), 1 << 20, () -> {
            JsonObject parsed;
            try {
                parsed = new JsonObject(in);
            } catch (DecodeException e) {
                Fuzz.countOther("json-syntax");     // the config store refuses the file
                return End.REJECTED;
            }
            ReplicaConfig c;
            try {
                c = ReplicaConfig.fromJson(parsed);
            } catch (IllegalArgumentException e) {
                if (e.getMessage() == null || e.getMessage().isBlank()) {
                    throw new AssertionError("rejection without a message", e);
                }
                Fuzz.countOther("config-invalid");
                return End.REJECTED;
            }
            check(parsed, c);
            return End.ACCEPTED;
        });
    }

    static String abbreviate(String s) {
        return s.length() > 300 ? s.substring(0, 300) + "..." : s;
    }

    /** An accepted configuration holds exactly the values written, in range. */
    static void check(JsonObject j, ReplicaConfig c) {
        assertThat(c.name() != null && !c.name().isBlank(), "blank name accepted");
        assertThat(c.multifdChannels() >= 0 && c.multifdChannels() <= 255, "multifd-channels " + c.multifdChannels());
        assertThat(c.port() >= 0 && c.port() <= 65535, "port " + c.port());
        assertThat(c.maxRamBytes() > 0 && c.maxDeviceStateBytes() > 0 && c.maxVmdescBytes() > 0, "limits " + c);
        var colo = c.coloOptions();
        assertThat(colo.heartbeatMs() > 0 && colo.checkpointDelayMs() > 0 && colo.flushWorkers() >= 1
                && colo.flushWorkers() <= 64 && colo.maxBlob() > 0, "COLO options " + colo);
        exactInt(j, "multifd-channels", c.multifdChannels());
        if (!j.containsKey("listen")) {
            exactInt(j, "port", c.port());
        }
        exactInt(j, "flush-workers", colo.flushWorkers());
        exactInt(j, "x-checkpoint-delay", colo.checkpointDelayMs());
        exactInt(j, "heartbeat-timeout-ms", colo.heartbeatMs());
        exactSize(j, "max-ram", c.maxRamBytes());
        exactSize(j, "max-device-state", c.maxDeviceStateBytes());
        exactSize(j, "max-vmdesc", c.maxVmdescBytes());
        exactSize(j, "blob-limit", colo.maxBlob());
    }

    /** A number key that was accepted must be an integral number and hold it unchanged. */
    static void exactInt(JsonObject j, String key, long got) {
        if (!j.containsKey(key) || j.getValue(key) == null) {
            return;
        }
        Object v = j.getValue(key);
        assertThat(v instanceof Number, key + ": " + describe(v) + " accepted as " + got);
        Number n = (Number) v;
        assertThat(n.doubleValue() == Math.rint(n.doubleValue()) && n.longValue() == got,
                key + ": " + describe(v) + " accepted as " + got);
    }

    /** A size that was accepted must hold exactly what the operator wrote. */
    static void exactSize(JsonObject j, String key, long got) {
        if (!j.containsKey(key) || j.getValue(key) == null) {
            return;
        }
        Object v = j.getValue(key);
        long want;
        try {
            want = Sizes.parse(v);
        } catch (IllegalArgumentException e) {
            throw new AssertionError(key + ": " + describe(v) + " is not a size but was accepted as " + got);
        }
        if (v instanceof Number n) {
            assertThat(n.doubleValue() == Math.rint(n.doubleValue()), key + ": " + describe(v) + " accepted as " + got);
        }
        assertThat(want == got, key + ": " + describe(v) + " accepted as " + got);
    }

    static String describe(Object v) {
        return v == null ? "null" : v.getClass().getSimpleName() + " " + abbreviate(String.valueOf(v));
    }

    static void assertThat(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }
}
