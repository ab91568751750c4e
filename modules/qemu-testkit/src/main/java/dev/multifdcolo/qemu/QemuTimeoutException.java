package dev.multifdcolo.qemu;

/** Something expected from QEMU (a QMP answer or event, a qtest answer, a socket) did not arrive in time. */
public class QemuTimeoutException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public QemuTimeoutException(String message) {
        super(message);
    }
}
