package dev.multifdcolo.qemu;

/** A qtest command was answered with something other than {@code OK} (usually {@code FAIL ...}). */
public class QtestException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String command;
    private final String response;

    public QtestException(String command, String response) {
        super("qtest '" + abbreviate(command) + "' failed: " + response);
        this.command = command;
        this.response = response;
    }

    /** The command line that was sent (without the newline). */
    public String command() {
        return command;
    }

    /** QEMU's answer line, e.g. {@code "FAIL Unknown command 'x'"}. */
    public String response() {
        return response;
    }

    static String abbreviate(String s) {
        return s.length() <= 120 ? s : s.substring(0, 120) + "...(" + s.length() + " chars)";
    }
}
