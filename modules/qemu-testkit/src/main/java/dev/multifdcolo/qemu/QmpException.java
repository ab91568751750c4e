package dev.multifdcolo.qemu;

/** QEMU answered a QMP command with an {@code error} object. */
public class QmpException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String command;
    private final String errorClass;
    private final String desc;

    public QmpException(String command, String errorClass, String desc) {
        super("QMP '" + command + "' failed: " + errorClass + ": " + desc);
        this.command = command;
        this.errorClass = errorClass;
        this.desc = desc;
    }

    /** The command that failed, e.g. {@code "migrate"}. */
    public String command() {
        return command;
    }

    /** QEMU's error class, e.g. {@code "GenericError"} or {@code "CommandNotFound"}. */
    public String errorClass() {
        return errorClass;
    }

    /** QEMU's human-readable error description. */
    public String desc() {
        return desc;
    }
}
