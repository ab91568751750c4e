package dev.multifdcolo.wire.encode;

import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.RamFlags;
import dev.multifdcolo.wire.SectionType;
import dev.multifdcolo.wire.Wire;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;

/**
 * Big-endian encoder for the main migration channel (PROTOCOL.md §7): stream header,
 * configuration, section framing, commands, RAM records and the vmdesc trailer.
 *
 * <p>Bytes go into one direct {@link ByteBuffer}. In <em>buffered</em> mode the buffer grows as
 * needed and the caller takes the bytes ({@link #toByteArray()}, {@link #buffer()}); in
 * <em>channel</em> mode the buffer has a fixed capacity and is written to the channel whenever a
 * record does not fit, and on {@link #flush()}. Nothing is allocated per page: page bytes are
 * copied from the caller's {@link MemorySegment} straight into the buffer.
 *
 * <p>The writer keeps the RAM "current block" (the block named by the last ZERO/PAGE record) so
 * that later page records of the same block carry CONTINUE and no name. Like QEMU, that state
 * persists across sections (and, for COLO, across checkpoints) — §7.5, gotcha 9.
 *
 * <p>Not thread safe: one writer per main channel, used by one thread at a time.
 */
public final class StreamWriter {
    /** Largest single record we ever put: a PAGE record with a 255-byte block name. */
    private static final int MAX_PAGE_RECORD = 8 + 1 + Wire.RAMBLOCK_NAME_MAX + Wire.PAGE_SIZE;

    private final WritableByteChannel sink;
    private ByteBuffer buf;
    private MemorySegment bufSegment;
    private long flushedBytes;
    private String currentBlock;

    private StreamWriter(WritableByteChannel sink, int capacity) {
        this.sink = sink;
        allocate(Math.max(capacity, MAX_PAGE_RECORD));
    }

    /** A writer that keeps everything in a growable direct buffer. */
    public static StreamWriter buffered(int initialCapacity) {
        return new StreamWriter(null, initialCapacity);
    }

    /** A writer that drains its {@code bufferSize} buffer into {@code channel} (blocking). */
    public static StreamWriter toChannel(WritableByteChannel channel, int bufferSize) {
        if (channel == null) {
            throw new IllegalArgumentException("channel");
        }
        return new StreamWriter(channel, bufferSize);
    }

    private void allocate(int capacity) {
        ByteBuffer n = ByteBuffer.allocateDirect(capacity).order(ByteOrder.BIG_ENDIAN);
        if (buf != null) {
            buf.flip();
            n.put(buf);
        }
        buf = n;
        bufSegment = MemorySegment.ofBuffer(n.duplicate().clear());
    }

    /** Makes room for {@code n} more bytes: drains to the sink, or grows the buffer. */
    private void ensure(int n) throws IOException {
        if (buf.remaining() >= n) {
            return;
        }
        if (sink != null) {
            drain();
            if (buf.remaining() >= n) {
                return;
            }
        }
        long want = Math.max((long) buf.capacity() * 2, (long) buf.position() + n);
        if (want > Integer.MAX_VALUE - 16) {
            throw new IllegalStateException("stream buffer would exceed 2 GiB");
        }
        allocate((int) want);
    }

    private void drain() throws IOException {
        buf.flip();
        while (buf.hasRemaining()) {
            flushedBytes += sink.write(buf);
        }
        buf.clear();
    }

    /** Writes everything buffered to the channel (no-op in buffered mode). */
    public StreamWriter flush() throws IOException {
        if (sink != null) {
            drain();
        }
        return this;
    }

    /** Bytes produced so far (flushed or still buffered). */
    public long totalBytes() {
        return flushedBytes + buf.position();
    }

    /** Bytes currently held in the buffer (not yet flushed). */
    public int pending() {
        return buf.position();
    }

    /** Buffered mode: a read-only view of everything written so far (position 0). */
    public ByteBuffer buffer() {
        ByteBuffer d = buf.duplicate().flip();
        return d.asReadOnlyBuffer().order(ByteOrder.BIG_ENDIAN);
    }

    /** Buffered mode: a copy of everything written so far. */
    public byte[] toByteArray() {
        ByteBuffer d = buffer();
        byte[] out = new byte[d.remaining()];
        d.get(out);
        return out;
    }

    /** Forgets the buffered bytes (the CONTINUE state is kept). */
    public StreamWriter clear() {
        buf.clear();
        return this;
    }

    // ------------------------------------------------------------------ primitives

    public StreamWriter u8(int v) throws IOException {
        ensure(1);
        buf.put((byte) v);
        return this;
    }

    public StreamWriter be16(int v) throws IOException {
        ensure(2);
        buf.putShort((short) v);
        return this;
    }

    public StreamWriter be32(int v) throws IOException {
        ensure(4);
        buf.putInt(v);
        return this;
    }

    public StreamWriter be64(long v) throws IOException {
        ensure(8);
        buf.putLong(v);
        return this;
    }

    public StreamWriter bytes(byte[] b) throws IOException {
        return bytes(b, 0, b.length);
    }

    public StreamWriter bytes(byte[] b, int off, int len) throws IOException {
        if (sink != null && len > buf.capacity()) {
            drain();
            flushedBytes += writeFully(ByteBuffer.wrap(b, off, len));
            return this;
        }
        ensure(len);
        buf.put(b, off, len);
        return this;
    }

    private long writeFully(ByteBuffer b) throws IOException {
        long n = 0;
        while (b.hasRemaining()) {
            n += sink.write(b);
        }
        return n;
    }

    /** Counted string (§7.1): u8 length + bytes, no NUL. */
    public StreamWriter countedString(String s) throws IOException {
        byte[] b = s.getBytes(StandardCharsets.ISO_8859_1);
        if (b.length > 255) {
            throw new IllegalArgumentException("counted string longer than 255 bytes: " + s);
        }
        ensure(1 + b.length);
        buf.put((byte) b.length).put(b);
        return this;
    }

    // ------------------------------------------------------------------ stream structure

    /** {@code QEVM} + version 3 (§7.2). */
    public StreamWriter header() throws IOException {
        return be32(Wire.QEVM_MAGIC).be32(Wire.STREAM_VERSION);
    }

    /** CONFIGURATION record with the machine type name and no subsections (§7.3). */
    public StreamWriter configuration(String machine) throws IOException {
        byte[] name = machine.getBytes(StandardCharsets.ISO_8859_1);
        return u8(SectionType.CONFIGURATION).be32(name.length).bytes(name);
    }

    /** START record header: type, id, counted idstr, instance, version (§7.4). */
    public StreamWriter sectionStart(int sectionId, String idstr, int instanceId, int versionId) throws IOException {
        return sectionWithName(SectionType.START, sectionId, idstr, instanceId, versionId);
    }

    /** FULL record header (§7.4). */
    public StreamWriter sectionFull(int sectionId, String idstr, int instanceId, int versionId) throws IOException {
        return sectionWithName(SectionType.FULL, sectionId, idstr, instanceId, versionId);
    }

    private StreamWriter sectionWithName(int type, int sectionId, String idstr, int instanceId, int versionId)
            throws IOException {
        return u8(type).be32(sectionId).countedString(idstr).be32(instanceId).be32(versionId);
    }

    /** PART record header. */
    public StreamWriter sectionPart(int sectionId) throws IOException {
        return u8(SectionType.PART).be32(sectionId);
    }

    /** END record header. */
    public StreamWriter sectionEnd(int sectionId) throws IOException {
        return u8(SectionType.END).be32(sectionId);
    }

    /** Section footer: 0x7e + be32 id. */
    public StreamWriter footer(int sectionId) throws IOException {
        return u8(SectionType.FOOTER).be32(sectionId);
    }

    /** EOF record (0x00). */
    public StreamWriter eof() throws IOException {
        return u8(SectionType.EOF);
    }

    /** COMMAND record: 0x08, be16 command, be16 length, data (§7.6). */
    public StreamWriter command(Command cmd, byte[] data) throws IOException {
        if (cmd.fixedLength >= 0 && data.length != cmd.fixedLength) {
            throw new IllegalArgumentException(cmd + " takes " + cmd.fixedLength + " data bytes");
        }
        return u8(SectionType.COMMAND).be16(cmd.id).be16(data.length).bytes(data);
    }

    public StreamWriter openReturnPath() throws IOException {
        return command(Command.OPEN_RETURN_PATH, new byte[0]);
    }

    /** PING with a be32 value; a destination with an open return path answers PONG(value). */
    public StreamWriter ping(int value) throws IOException {
        return u8(SectionType.COMMAND).be16(Command.PING.id).be16(4).be32(value);
    }

    /** ENABLE_COLO (7.2 only; 11.1 rejects it). */
    public StreamWriter enableColo() throws IOException {
        return command(Command.ENABLE_COLO, new byte[0]);
    }

    /** SWITCHOVER_START (10.0+; a 7.2 destination rejects it). */
    public StreamWriter switchoverStart() throws IOException {
        return command(Command.SWITCHOVER_START, new byte[0]);
    }

    /** VMDESCRIPTION trailer: 0x06 + be32 length + JSON (§7.7). */
    public StreamWriter vmdescription(byte[] json) throws IOException {
        return u8(SectionType.VMDESCRIPTION).be32(json.length).bytes(json);
    }

    public StreamWriter vmdescription(String json) throws IOException {
        return vmdescription(json.getBytes(StandardCharsets.UTF_8));
    }

    // ------------------------------------------------------------------ RAM records (§7.5)

    /**
     * MEM_SIZE record with the block list (§7.5.1): {@code total | 0x04}, then per block a counted
     * idstr and a be64 used length. {@code total} is the sum of the lengths.
     */
    public StreamWriter ramMemSize(String[] names, long[] lengths) throws IOException {
        if (names.length != lengths.length) {
            throw new IllegalArgumentException("names and lengths differ in size");
        }
        long total = 0;
        for (long l : lengths) {
            if (l <= 0 || (l & (Wire.PAGE_SIZE - 1)) != 0) {
                throw new IllegalArgumentException("block length must be a positive page multiple: " + l);
            }
            total += l;
        }
        be64(total | RamFlags.MEM_SIZE);
        for (int i = 0; i < names.length; i++) {
            countedString(names[i]).be64(lengths[i]);
        }
        return this;
    }

    private void pageHeader(int flag, String block, long offset) throws IOException {
        if ((offset & (Wire.PAGE_SIZE - 1)) != 0 || offset < 0) {
            throw new IllegalArgumentException("page offset not page aligned: 0x" + Long.toHexString(offset));
        }
        if (block.equals(currentBlock)) {
            be64(offset | flag | RamFlags.CONTINUE);
        } else {
            be64(offset | flag);
            countedString(block);
            currentBlock = block;
        }
    }

    /** ZERO record (fill byte 0); CONTINUE when {@code block} is the current block. */
    public StreamWriter ramZero(String block, long offset) throws IOException {
        ensure(8 + 1 + 255 + 1);
        pageHeader(RamFlags.ZERO, block, offset);
        buf.put((byte) 0);
        return this;
    }

    /** PAGE record with the page at {@code src[srcOffset, srcOffset + PAGE)}. */
    public StreamWriter ramPage(String block, long offset, MemorySegment src, long srcOffset) throws IOException {
        ensure(MAX_PAGE_RECORD);
        pageHeader(RamFlags.PAGE, block, offset);
        MemorySegment.copy(src, srcOffset, bufSegment, buf.position(), Wire.PAGE_SIZE);
        buf.position(buf.position() + Wire.PAGE_SIZE);
        return this;
    }

    /** PAGE record with the next {@code PAGE} bytes of {@code page} (consumed). */
    public StreamWriter ramPage(String block, long offset, ByteBuffer page) throws IOException {
        if (page.remaining() < Wire.PAGE_SIZE) {
            throw new IllegalArgumentException("need a whole page");
        }
        ensure(MAX_PAGE_RECORD);
        pageHeader(RamFlags.PAGE, block, offset);
        ByteBuffer s = page.slice(page.position(), Wire.PAGE_SIZE);
        buf.put(s);
        page.position(page.position() + Wire.PAGE_SIZE);
        return this;
    }

    /** EOS record: ends a RAM section payload. */
    public StreamWriter ramEos() throws IOException {
        return be64(RamFlags.EOS);
    }

    /** MULTIFD_FLUSH record (modern framing barrier, §4.2). */
    public StreamWriter ramMultifdFlush() throws IOException {
        return be64(RamFlags.MULTIFD_FLUSH);
    }

    /** The block named by the last ZERO/PAGE record, or null. */
    public String currentBlock() {
        return currentBlock;
    }

    /** Forgets the current block: the next page record names its block again. */
    public StreamWriter resetCurrentBlock() {
        currentBlock = null;
        return this;
    }
}
