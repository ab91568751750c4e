package dev.multifdcolo.wire;

/**
 * A stream was rejected because it broke {@link #rule()}. The message is one line:
 * {@code rule-id: detail}, so that logs, the CLI and tests all show the same text.
 */
public final class ProtocolException extends RuntimeException {
    private final Rule rule;

    public ProtocolException(Rule rule, String detail) {
        super(rule.id() + ": " + detail, null, false, false);
        this.rule = rule;
    }

    public Rule rule() {
        return rule;
    }

    /** Throws if {@code condition} is false; the detail is only formatted on failure. */
    public static void check(boolean condition, Rule rule, String format, Object... args) {
        if (!condition) {
            throw new ProtocolException(rule, args.length == 0 ? format : String.format(format, args));
        }
    }
}
