package dev.multifdcolo.app.colo;

import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.primary.ColoPrimary;
import dev.multifdcolo.primary.Workloads;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.wire.Framing;
import io.vertx.core.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The COLO precopy image (epoch 0) must equal the primary's, page for page, also when pages
 * change between precopy rounds (data → zero, zero → data, data → other data): the secondary
 * writes multifd pages into its cache and mirrors them into the guest image on worker threads,
 * and a mirror copy still running when the next round rewrites the page must not leave the guest
 * image different from the cache — no later checkpoint flush would repair a page nobody dirties.
 * 200 short sessions (8 MiB, six dirty precopy rounds, multifd 4, both framings).
 */
class ColoPrecopyTest {
    static final int SESSIONS = 200;
    static SecondaryRig rig;
    static BlockedThreadGuard guard;

    @BeforeAll
    static void start() throws Exception {
        guard = BlockedThreadGuard.start();
        rig = new SecondaryRig(4, 10_000);
    }

    @AfterAll
    static void stop() {
        if (rig != null) {
            rig.close();
        }
        guard.assertNone();
    }

    @Test
    void precopyImageEqualsThePrimarysAfterDirtyRounds() throws Exception {
        List<String> bad = new ArrayList<>();
        ColoPrimary.Options o = ColoPrimary.Options.defaults().withPrecopyDirtyRounds(6);
        long t0 = System.nanoTime();
        for (int i = 0; i < SESSIONS; i++) {
            Framing framing = i % 2 == 0 ? Framing.MODERN : Framing.LEGACY;
            Future<MigrationResult> outcome = rig.next();
            try (GuestMemory mem = SecondaryRig.image(8L << 20, i)) {
                ColoPrimary p = rig.startPrimary(framing, 4, mem, Workloads.random(i, 1500), o);
                String expected = p.digest(0);
                p.close();
                MigrationResult res = SecondaryRig.await(outcome, 10);
                try {
                    assertEquals(0, res.colo().epoch());
                    String got = res.memory().fastDigest();
                    if (!got.equals(expected) || !rig.commits.get(0L).digest().equals(expected)) {
                        bad.add("session " + i + " (" + framing + "): " + diff(mem, res.memory()));
                    }
                } finally {
                    res.memory().close();
                }
            }
        }
        System.out.printf("%d COLO precopies with 6 dirty rounds in %.1f s, %d wrong%n", SESSIONS,
                (System.nanoTime() - t0) / 1e9, bad.size());
        assertTrue(bad.isEmpty(), bad.size() + " of " + SESSIONS + " precopy images differ from the primary's: " + bad);
    }

    /** Differing pages: primary zero/data, secondary guest zero/data, and whether its cache is right. */
    private static String diff(GuestMemory primary, GuestMemory secondary) {
        StringBuilder sb = new StringBuilder();
        int n = 0;
        for (RamBlock a : primary.blocks()) {
            RamBlock b = secondary.block(a.name());
            for (long off = 0; off < a.length(); off += 4096) {
                MemorySegment want = a.guest().asSlice(off, 4096);
                if (want.mismatch(b.guest().asSlice(off, 4096)) >= 0) {
                    if (++n <= 4) {
                        sb.append(String.format(" %s@0x%x primary %s, guest %s, cache %s;", a.name(), off,
                                RamBlock.isZero(a.guest(), off) ? "zero" : "data",
                                RamBlock.isZero(b.guest(), off) ? "zero" : "data",
                                want.mismatch(b.cache().asSlice(off, 4096)) < 0 ? "right" : "wrong"));
                    }
                }
            }
        }
        return n + " page(s):" + sb;
    }
}
