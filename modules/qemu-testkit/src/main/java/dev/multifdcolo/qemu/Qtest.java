package dev.multifdcolo.qemu;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Base64;
import java.util.Objects;

/**
 * Client for QEMU's qtest line protocol ({@code -qtest unix:...}): one command line out,
 * one {@code OK [value]} / {@code FAIL ...} line back. Asynchronous {@code IRQ ...} lines
 * (sent after {@code irq_intercept_*}) are skipped.
 *
 * <p>Memory accesses need a CPU in the machine ({@code -cpu ...}); without one QEMU crashes.
 * Not thread-safe: use it from one thread at a time.
 */
public final class Qtest implements AutoCloseable {

    /** Largest payload per {@code b64write} line. */
    static final int WRITE_CHUNK = 256 * 1024;
    /** Largest payload per {@code b64read} line. */
    static final int READ_CHUNK = 1024 * 1024;
    /** Largest range per {@code memset} (QEMU allocates a buffer of that size). */
    static final long MEMSET_CHUNK = 16L * 1024 * 1024;

    private final SocketChannel channel;
    private final Selector selector;
    private final SelectionKey key;
    private final ByteBuffer readBuffer = ByteBuffer.allocate(256 * 1024);
    private byte[] pendingBytes = new byte[64 * 1024];
    private int pendingLength;
    private int scanned;
    private Duration responseTimeout = Duration.ofSeconds(60);
    /** Set once an answer went missing: a late answer would be taken for the next command's. */
    private String broken;

    private Qtest(SocketChannel channel) throws IOException {
        this.channel = channel;
        channel.configureBlocking(false);
        this.selector = Selector.open();
        this.key = channel.register(selector, SelectionKey.OP_READ);
    }

    /** Connects to a qtest socket, retrying until it exists and accepts or the timeout expires. */
    public static Qtest connect(Path socket, Duration timeout) throws IOException {
        return new Qtest(UnixSockets.connect(socket, timeout, () -> true));
    }

    static Qtest connect(Path socket, Duration timeout, java.util.function.BooleanSupplier keepTrying)
            throws IOException {
        return new Qtest(UnixSockets.connect(socket, timeout, keepTrying));
    }

    /** How long one answer may take before {@link QemuTimeoutException}; default 60 s. */
    public void setResponseTimeout(Duration timeout) {
        this.responseTimeout = Objects.requireNonNull(timeout);
    }

    /**
     * Sends one command line and returns what follows {@code OK} on the answer line (trimmed,
     * possibly empty).
     *
     * @throws QtestException       the answer was not {@code OK ...}
     * @throws QemuTimeoutException no answer in time
     * @throws UncheckedIOException the connection failed (QEMU exited?)
     * @throws IllegalStateException an earlier command timed out or the connection failed; the
     *                               stream can no longer be trusted to be in step
     */
    public String command(String line) {
        if (line.indexOf('\n') >= 0) {
            throw new IllegalArgumentException("a qtest command is a single line");
        }
        if (broken != null) {
            throw new IllegalStateException("qtest connection unusable after: " + broken);
        }
        long deadline = System.nanoTime() + responseTimeout.toNanos();
        try {
            writeAll(ByteBuffer.wrap((line + "\n").getBytes(StandardCharsets.US_ASCII)), deadline, line);
            while (true) {
                String answer = readLine(deadline, line);
                if (answer.startsWith("IRQ")) {
                    continue; // asynchronous interrupt notification, not our answer
                }
                if (answer.equals("OK")) {
                    return "";
                }
                if (answer.startsWith("OK ")) {
                    return answer.substring(3).trim();
                }
                throw new QtestException(line, answer);
            }
        } catch (QemuTimeoutException e) {
            broken = e.getMessage();
            throw e;
        } catch (IOException e) {
            broken = e.toString();
            throw new UncheckedIOException("qtest '" + QtestException.abbreviate(line) + "'", e);
        }
    }

    // ------------------------------------------------------------ single accesses

    public void writeb(long addr, int value) {
        command(String.format("writeb 0x%x 0x%x", addr, value & 0xff));
    }

    public void writew(long addr, int value) {
        command(String.format("writew 0x%x 0x%x", addr, value & 0xffff));
    }

    public void writel(long addr, long value) {
        command(String.format("writel 0x%x 0x%x", addr, value & 0xffff_ffffL));
    }

    public void writeq(long addr, long value) {
        command(String.format("writeq 0x%x 0x%x", addr, value));
    }

    public int readb(long addr) {
        return (int) parseValue(command(String.format("readb 0x%x", addr)));
    }

    public int readw(long addr) {
        return (int) parseValue(command(String.format("readw 0x%x", addr)));
    }

    /** Reads a 32-bit value (returned unsigned in a long). */
    public long readl(long addr) {
        return parseValue(command(String.format("readl 0x%x", addr)));
    }

    public long readq(long addr) {
        return parseValue(command(String.format("readq 0x%x", addr)));
    }

    private static long parseValue(String text) {
        String hex = text.startsWith("0x") || text.startsWith("0X") ? text.substring(2) : text;
        return Long.parseUnsignedLong(hex, 16);
    }

    // ------------------------------------------------------------ bulk accesses

    /** Writes {@code data} at guest-physical {@code addr} (split into several commands if large). */
    public void b64write(long addr, byte[] data) {
        b64write(addr, data, 0, data.length);
    }

    /** Writes {@code data[offset, offset+length)} at guest-physical {@code addr}. */
    public void b64write(long addr, byte[] data, int offset, int length) {
        Objects.checkFromIndexSize(offset, length, data.length);
        Base64.Encoder encoder = Base64.getEncoder();
        for (int done = 0; done < length; ) {
            int n = Math.min(WRITE_CHUNK, length - done);
            String b64 = encoder.encodeToString(Arrays.copyOfRange(data, offset + done, offset + done + n));
            command("b64write 0x" + Long.toHexString(addr + done) + " 0x" + Integer.toHexString(n) + " " + b64);
            done += n;
        }
    }

    /** Fills {@code length} bytes at {@code addr} with {@code value} (low 8 bits). */
    public void memset(long addr, long length, int value) {
        if (length < 0) {
            throw new IllegalArgumentException("negative length");
        }
        for (long done = 0; done < length; ) {
            long n = Math.min(MEMSET_CHUNK, length - done);
            command(String.format("memset 0x%x 0x%x 0x%x", addr + done, n, value & 0xff));
            done += n;
        }
    }

    /** Reads {@code length} bytes at guest-physical {@code addr}. */
    public byte[] b64read(long addr, int length) {
        if (length < 0) {
            throw new IllegalArgumentException("negative length");
        }
        byte[] out = new byte[length];
        Base64.Decoder decoder = Base64.getDecoder();
        for (int done = 0; done < length; ) {
            int n = Math.min(READ_CHUNK, length - done);
            byte[] part = decoder.decode(command("b64read 0x" + Long.toHexString(addr + done) + " 0x"
                    + Integer.toHexString(n)));
            if (part.length != n) {
                throw new IllegalStateException("b64read returned " + part.length + " bytes, expected " + n);
            }
            System.arraycopy(part, 0, out, done, n);
            done += n;
        }
        return out;
    }

    // ------------------------------------------------------------ plumbing

    private void writeAll(ByteBuffer bytes, long deadline, String what) throws IOException {
        while (bytes.hasRemaining()) {
            if (channel.write(bytes) == 0) {
                key.interestOps(SelectionKey.OP_WRITE);
                try {
                    waitReady(deadline, what);
                } finally {
                    key.interestOps(SelectionKey.OP_READ);
                }
            }
        }
    }

    private String readLine(long deadline, String what) throws IOException {
        while (true) {
            for (int i = scanned; i < pendingLength; i++) {
                if (pendingBytes[i] == '\n') {
                    String line = new String(pendingBytes, 0, i, StandardCharsets.US_ASCII);
                    System.arraycopy(pendingBytes, i + 1, pendingBytes, 0, pendingLength - i - 1);
                    pendingLength -= i + 1;
                    scanned = 0;
                    return line.endsWith("\r") ? line.substring(0, line.length() - 1) : line;
                }
            }
            scanned = pendingLength;
            readBuffer.clear();
            int n = channel.read(readBuffer);
            if (n < 0) {
                throw new IOException("qtest connection closed by QEMU");
            }
            if (n == 0) {
                waitReady(deadline, what);
                continue;
            }
            if (pendingLength + n > pendingBytes.length) {
                pendingBytes = Arrays.copyOf(pendingBytes, Math.max(pendingBytes.length * 2, pendingLength + n));
            }
            System.arraycopy(readBuffer.array(), 0, pendingBytes, pendingLength, n);
            pendingLength += n;
        }
    }

    private void waitReady(long deadline, String what) throws IOException {
        long left = deadline - System.nanoTime();
        if (left <= 0) {
            throw new QemuTimeoutException("qtest '" + QtestException.abbreviate(what) + "' got no answer within "
                    + responseTimeout.toMillis() + " ms");
        }
        selector.select(Math.max(1, left / 1_000_000));
        selector.selectedKeys().clear();
    }

    @Override
    public void close() {
        try {
            selector.close();
        } catch (IOException ignored) {
            // nothing to do
        }
        try {
            channel.close();
        } catch (IOException ignored) {
            // nothing to do
        }
    }
}
