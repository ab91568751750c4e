package dev.multifdcolo.secondary.fuzz;

import dev.multifdcolo.secondary.fuzz.FuzzRig.FuzzConfig;
import dev.multifdcolo.secondary.fuzz.FuzzRig.Outcome;
import dev.multifdcolo.secondary.fuzz.Seeds.Seed;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The fuzzer's seeds are valid under the fuzz rig's small limits: every precopy seed completes and
 * every COLO seed commits all its checkpoints, in several read splits. (Otherwise most mutated
 * inputs would fail for the seed's sake and the fuzz statistics would mean little.)
 */
class SeedsTest {

    @Test
    void precopySeedsComplete() {
        for (Seed s : DecoderFuzzTest.PRECOPY) {
            if (s.colo()) {
                continue;
            }
            for (long split = 0; split < 4; split++) {
                SplittableRandom r = new SplittableRandom(split);
                Fuzz.next();
                Outcome o = FuzzRig.run(new FuzzConfig(s.channels().size(), s.compression(), s.flush(), false, FuzzRig.LIMITS),
                        new Reads(s.main(), r), FuzzRig.reads(s.channels(), r));
                assertNull(o.error, () -> s + ": " + o.message);
                assertTrue(o.completed, s + " completes");
            }
        }
    }

    @Test
    void coloSeedsCommitEveryCheckpoint() {
        for (Seed s : DecoderFuzzTest.COLO) {
            int expected = s.name().startsWith("capture") ? 3 : Integer.parseInt(s.name().replaceAll(".* colo x", ""));
            for (long split = 0; split < 4; split++) {
                SplittableRandom r = new SplittableRandom(split);
                Fuzz.next();
                Outcome o = FuzzRig.run(new FuzzConfig(s.channels().size(), s.compression(), s.flush(), true, FuzzRig.LIMITS),
                        new Reads(s.main(), r, s.precopyEnd()), FuzzRig.reads(s.channels(), r));
                assertNull(o.error, () -> s + ": " + o.message);
                assertEquals(expected, o.commits, s + ": checkpoints committed");
                assertEquals(o.committedDigest, o.finalDigest, s + ": image after failover = last commit");
                assertTrue(s.coloMainPrefix() > s.precopyEnd(), s + ": checkpoint 1 ends after the precopy");
            }
        }
    }
}
