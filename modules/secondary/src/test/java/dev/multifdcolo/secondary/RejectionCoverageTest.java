package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.RejectionRig.Rejects;
import dev.multifdcolo.wire.Rule;
import org.junit.jupiter.api.Disabled;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Keeps "every rejection rule has a test" true: each {@link Rule} is proven by an enabled
 * {@code @Test} annotated {@link Rejects}, or is listed in {@link #NOT_REACHABLE} with the reason.
 * A rule that becomes reachable (some main code starts raising it) fails this test until it gets
 * a rejection test.
 */
class RejectionCoverageTest {
    static final List<Class<?>> TESTS = List.of(RejectionMainStreamTest.class, RejectionMultifdTest.class,
            RejectionBoundsTest.class, RejectionNetworkTest.class, RejectionColoTest.class,
            RejectionLimitsTest.class, RejectionTlsTest.class);

    /** Rules no code of the receiver raises today. */
    static final Map<Rule, String> NOT_REACHABLE = Map.of();

    static Set<Rule> tested() {
        Set<Rule> tested = EnumSet.noneOf(Rule.class);
        for (Class<?> c : TESTS) {
            for (Method m : c.getDeclaredMethods()) {
                Rejects r = m.getAnnotation(Rejects.class);
                if (r != null && m.isAnnotationPresent(Test.class) && !m.isAnnotationPresent(Disabled.class)) {
                    tested.addAll(List.of(r.value()));
                }
            }
        }
        return tested;
    }

    @Test
    void everyRuleHasARejectionTestOrIsListedAsNotReachable() {
        Set<Rule> tested = tested();
        List<String> problems = new ArrayList<>();
        for (Rule r : Rule.values()) {
            if (!tested.contains(r) && !NOT_REACHABLE.containsKey(r)) {
                problems.add(r + ": no @Rejects test");
            }
            if (tested.contains(r) && NOT_REACHABLE.containsKey(r)) {
                problems.add(r + ": tested, so remove it from NOT_REACHABLE");
            }
        }
        assertTrue(problems.isEmpty(), String.join("\n", problems));
    }

    /** Scans the receiver's sources (the module directory is the working directory under Maven). */
    @Test
    void theRulesListedAsNotReachableAreRaisedNowhere() throws IOException {
        List<Path> roots = List.of(Path.of("src/main/java"), Path.of("../wire/src/main/java"), Path.of("../memory/src/main/java"));
        assumeTrue(roots.stream().allMatch(Files::isDirectory), "sources not found from " + Path.of("").toAbsolutePath());
        Set<Rule> raised = EnumSet.noneOf(Rule.class);
        Pattern ref = Pattern.compile("Rule\\.([A-Z_]+)\\b");
        for (Path root : roots) {
            try (Stream<Path> files = Files.walk(root)) {
                for (Path f : files.filter(p -> p.toString().endsWith(".java") && !p.endsWith("Rule.java")).toList()) {
                    Matcher m = ref.matcher(Files.readString(f));
                    while (m.find()) {
                        raised.add(Rule.valueOf(m.group(1)));
                    }
                }
            }
        }
        for (Rule r : NOT_REACHABLE.keySet()) {
            assertFalse(raised.contains(r), r + " is referenced by main code now: give it a rejection test");
        }
        Set<Rule> untested = EnumSet.copyOf(raised);
        untested.removeAll(tested());
        assertEquals(Set.of(), untested, "rules the receiver raises without a rejection test");
    }
}
