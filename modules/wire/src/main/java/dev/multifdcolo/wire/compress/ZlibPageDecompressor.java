package dev.multifdcolo.wire.compress;

import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;

import java.nio.ByteBuffer;
import java.nio.ReadOnlyBufferException;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * zlib stream of one channel (§6.1): an {@link Inflater} with the zlib wrapper, fed packet by
 * packet and never reset.
 *
 * <p>After the output is full we always make one more {@code inflate} into a small probe buffer,
 * whether or not input is left. zlib stops writing at a full buffer but may still hold output
 * (the rest of a back-reference) with no input left; if that went unnoticed it would land at the
 * start of the next packet's pages. With a well-formed packet the probe finds nothing and all
 * input, including the {@code 00 00 ff ff} sync-flush tail, is already consumed.
 */
final class ZlibPageDecompressor implements PageDecompressor {
    private static final int PROBE_LEN = 64;

    private final Inflater inflater = new Inflater(false);
    /** Detaches the inflater from the caller's buffer between packets. */
    private final ByteBuffer noInput = ByteBuffer.allocate(0);
    private final ByteBuffer probe = ByteBuffer.allocate(PROBE_LEN);
    private boolean failed;
    private boolean closed;

    /** Packets whose input was not fully consumed when the output became full (tests, diagnostics). */
    long leftoverInputPackets;

    @Override
    public Compression compression() {
        return Compression.ZLIB;
    }

    @Override
    public void decompress(ByteBuffer input, ByteBuffer output) {
        int expected = Checks.begin(closed, failed, input, output);
        failed = true; // cleared on success
        inflater.setInput(input);
        try {
            while (output.hasRemaining()) {
                if (inflater.inflate(output) == 0) {
                    stalled(expected - output.remaining(), expected);
                }
            }
            int left = inflater.getRemaining();
            if (left > 0) {
                leftoverInputPackets++;
            }
            probe.clear();
            if (inflater.inflate(probe) > 0) {
                throw new ProtocolException(Rule.DECOMPRESS_SIZE, String.format(
                        "zlib payload decodes to more than the %d bytes of the packet's pages", expected));
            }
            if (inflater.finished()) {
                throw streamEnded();
            }
            if (inflater.getRemaining() > 0) {
                throw new ProtocolException(Rule.DECOMPRESS_CORRUPT, String.format(
                        "%d of %d zlib payload bytes left over after the packet's %d bytes",
                        inflater.getRemaining(), left, expected));
            }
        } catch (DataFormatException e) {
            throw new ProtocolException(Rule.DECOMPRESS_CORRUPT, "zlib: " + e.getMessage());
        } finally {
            inflater.setInput(noInput);
        }
        failed = false;
    }

    /** {@code inflate} made no progress with room left in the output. */
    private void stalled(int produced, int expected) {
        if (inflater.finished()) {
            throw streamEnded();
        }
        if (inflater.needsDictionary()) {
            throw new ProtocolException(Rule.DECOMPRESS_CORRUPT, "zlib stream asks for a preset dictionary");
        }
        if (inflater.needsInput()) {
            throw new ProtocolException(Rule.DECOMPRESS_SIZE, String.format(
                    "zlib payload decodes to %d bytes, expected %d", produced, expected));
        }
        throw new ProtocolException(Rule.DECOMPRESS_CORRUPT, String.format(
                "zlib decoder stalled after %d of %d bytes", produced, expected));
    }

    private static ProtocolException streamEnded() {
        return new ProtocolException(Rule.DECOMPRESS_CORRUPT,
                "zlib stream ended (Z_STREAM_END); a multifd channel's stream never ends");
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            inflater.end();
        }
    }

    /** Argument checks shared by both decompressors. */
    static final class Checks {
        private Checks() {}

        /** @return {@code output.remaining()} */
        static int begin(boolean closed, boolean failed, ByteBuffer input, ByteBuffer output) {
            if (closed) {
                throw new IllegalStateException("decompressor closed");
            }
            if (failed) {
                throw new IllegalStateException("decompressor failed earlier: its stream is out of step");
            }
            if (output.isReadOnly()) {
                throw new ReadOnlyBufferException();
            }
            int expected = output.remaining();
            if (expected == 0) {
                throw new IllegalArgumentException(
                        "no room in output: a packet without normal pages has no compressed payload");
            }
            ProtocolException.check(input.remaining() <= PageDecompressor.MAX_PAYLOAD_SIZE,
                    Rule.PACKET_PAYLOAD_SIZE, "compressed payload of %d bytes, at most %d accepted",
                    input.remaining(), PageDecompressor.MAX_PAYLOAD_SIZE);
            return expected;
        }
    }
}
