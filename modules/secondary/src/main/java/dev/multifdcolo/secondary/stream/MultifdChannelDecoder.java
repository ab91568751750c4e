package dev.multifdcolo.secondary.stream;

import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.MultifdHello;
import dev.multifdcolo.wire.MultifdPacket;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;
import dev.multifdcolo.wire.compress.PageDecompressor;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * Non-blocking decoder of one multifd channel: the 64-byte hello, then RAM packets (§2, §3).
 * Each packet is <em>unfilled</em> with every check of §3.7 before a byte of payload is applied;
 * normal pages are copied straight from the socket buffer into their target pages (compression
 * none) or decoded by the channel's one long-lived decompressor (§6).
 *
 * <p>After a packet with SYNC (pages first, then the sync, §3.8) the decoder returns
 * {@link Progress#PAUSED}: the caller stops reading the socket until the main channel releases
 * the barrier (§4.3). Stale fields of 7.2 page-less packets are never read (§12.2).
 */
public final class MultifdChannelDecoder {

    /** Session callbacks. */
    public interface Listener {
        /** A valid hello for {@code channelId}; throws {@link Rule#HELLO_DUPLICATE_ID} if taken. */
        void onHello(int channelId);

        /** This channel reached a SYNC; it stays paused until released. */
        void onSync(int channelId);

        /**
         * A validated packet with pages is about to be applied. Returning false holds the channel
         * (the decoder returns PAUSED) until the session resumes it; it then asks again. A COLO
         * secondary holds packets that arrive between checkpoints (§9.4: a primary's next
         * checkpoint RAM may overtake its VMSTATE_SEND on the main socket).
         */
        default boolean admit(int channelId) {
            return true;
        }

        /**
         * A packet with pages arrived before the main channel's RAMBlock list was applied (the
         * channels are separate sockets: nothing orders them). Return true to hold the channel
         * until the session resumes it once the list is there (it then asks again); false when it
         * can be looked up now.
         */
        default boolean waitForBlockList(int channelId) {
            return false;
        }

        /** Accounting: one RAM packet applied. */
        void onPacket(int channelId, int normalPages, int zeroPages, long payloadBytes);
    }

    private enum State { HELLO, PREFIX, HEADER, WAIT_RAM, GATED, PAYLOAD, COMPRESSED, FAILED }

    private final int channels;
    private final byte[] uuid;
    private final Compression compression;
    private final RamSink sink;
    private final Listener listener;
    private final Gather gather = new Gather(Wire.PACKET_HEADER_LEN);
    private final MultifdPacket header = new MultifdPacket();
    private final long[] offsets = new long[Wire.PAGES_PER_PACKET];

    private State state = State.HELLO;
    private int channelId = -1;
    // current packet
    private RamBlock block;
    private MemorySegment target;
    private int normal;
    private int zero;
    private boolean sync;
    private int page;          // page being filled
    private int pageFill;      // bytes of it received
    private int nextSize;      // next_packet_size of the current packet
    // compression
    private PageDecompressor decompressor;
    private ByteBuffer compressedIn;
    private ByteBuffer decodedOut;
    private final int maxCompressed;

    public MultifdChannelDecoder(int channels, byte[] uuid, Compression compression, RamSink sink, Listener listener) {
        this.channels = channels;
        this.uuid = uuid.clone();
        this.compression = compression;
        this.sink = sink;
        this.listener = listener;
        this.maxCompressed = compression == Compression.NONE ? 0
                : PageDecompressor.MAX_PAYLOAD_SIZE;   // QEMU's own receive buffer: 2 x packet size
        gather.expect(Wire.HELLO_LEN);
    }

    /** The channel id from the hello, or -1 before it arrived. */
    public int channelId() {
        return channelId;
    }

    /**
     * Consumes bytes until the input is exhausted or a SYNC pauses the channel.
     *
     * @throws ProtocolException when the stream breaks a rule; the decoder is then unusable
     */
    public Progress feed(ByteBuffer in) {
        try {
            return decode(in);
        } catch (ProtocolException e) {
            state = State.FAILED;
            throw e;
        }
    }

    private Progress decode(ByteBuffer in) {
        while (in.hasRemaining() || state == State.GATED || state == State.WAIT_RAM) {
            switch (state) {
                case WAIT_RAM -> {
                    // the header is still in the gather buffer: validate and apply it again
                    if (unfill()) {
                        return Progress.PAUSED;
                    }
                }
                case GATED -> {
                    if (!listener.admit(channelId)) {
                        return Progress.PAUSED;
                    }
                    if (apply()) {
                        return Progress.PAUSED;
                    }
                }
                case HELLO -> {
                    if (!gather.fill(in)) {
                        return Progress.NEED_MORE;
                    }
                    channelId = MultifdHello.validate(gather.buf(), channels, uuid);
                    listener.onHello(channelId);
                    startPacket();
                }
                case PREFIX -> {
                    if (!gather.fill(in)) {
                        return Progress.NEED_MORE;
                    }
                    header.wrap(gather.buf()).checkPrefix();
                    // continue collecting the rest of the RAM header behind the 12-byte prefix
                    ByteBuffer b = gather.buf();
                    b.position(b.limit()).limit(Wire.PACKET_HEADER_LEN);
                    state = State.HEADER;
                }
                case HEADER -> {
                    if (!fillRest(in)) {
                        return Progress.NEED_MORE;
                    }
                    if (unfill()) {
                        return Progress.PAUSED;
                    }
                }
                case PAYLOAD -> {
                    copyPayload(in);
                    if (page == normal && finishPacket()) {
                        return Progress.PAUSED;
                    }
                }
                case COMPRESSED -> {
                    int n = Math.min(in.remaining(), compressedIn.remaining());
                    compressedIn.put(compressedIn.position(), in, in.position(), n);
                    compressedIn.position(compressedIn.position() + n);
                    in.position(in.position() + n);
                    if (!compressedIn.hasRemaining()) {
                        decompress();
                        if (finishPacket()) {
                            return Progress.PAUSED;
                        }
                    }
                }
                case FAILED -> throw new IllegalStateException("decoder failed earlier");
            }
        }
        return Progress.NEED_MORE;
    }

    /** Gather continuation that keeps the 12 prefix bytes already in the scratch buffer. */
    private boolean fillRest(ByteBuffer in) {
        ByteBuffer b = gather.buf();
        int n = Math.min(in.remaining(), b.remaining());
        b.put(b.position(), in, in.position(), n);
        b.position(b.position() + n);
        in.position(in.position() + n);
        if (b.hasRemaining()) {
            return false;
        }
        b.flip();
        return true;
    }

    private void startPacket() {
        gather.expect(MultifdPacket.COMMON_PREFIX_LEN);
        state = State.PREFIX;
    }

    /**
     * §3.7 steps 4-10 on a complete header, then sets up the payload.
     *
     * @return true when the caller pauses: the packet is complete and ends in a SYNC, or it waits
     *         (for the RAMBlock list, or at the COLO gate)
     */
    private boolean unfill() {
        state = State.HEADER;
        MultifdPacket h = header.wrap(gather.buf());
        zero = h.checkCounts();
        normal = h.normalPages();
        sync = h.sync();
        if (normal + zero == 0) {
            // page-less packet (SYNC, or 7.2's empty follow-up): no block lookup, no payload,
            // and next_packet_size / ramblock may be stale (7.2) — ignore them.
            return finishPacket();
        }
        int bits = h.compressionBits();
        ProtocolException.check(bits == compression.flagBits, Rule.PACKET_COMPRESSION,
                "packet compression bits 0x%x, but this replica expects %s (0x%x)",
                bits, compression.qemuName(), compression.flagBits);
        String name = h.ramblock();
        if (!sink.hasBlockList() && listener.waitForBlockList(channelId)) {
            state = State.WAIT_RAM;
            return true;
        }
        block = sink.block(name);
        ProtocolException.check(block != null, Rule.PACKET_RAMBLOCK, "unknown RAMBlock '%s'", name);
        long used = block.length();
        for (int i = 0; i < normal + zero; i++) {
            offsets[i] = h.checkedOffset(i, used, name);
        }
        nextSize = h.nextPacketSize();
        if (!listener.admit(channelId)) {
            state = State.GATED;
            return true;
        }
        return apply();
    }

    /** Applies a validated packet: zero pages now, then sets up its payload. @return true on SYNC end */
    private boolean apply() {
        if (zero > 0) {
            sink.zeroPages(block, offsets, normal, zero);
        }
        if (normal == 0) {
            return finishPacket();
        }
        target = sink.pageTarget(block);
        page = 0;
        pageFill = 0;
        if (compression == Compression.NONE) {
            // nocomp reads normal_pages x PAGE whatever next_packet_size says (§3.3)
            state = State.PAYLOAD;
        } else {
            int size = nextSize;
            ProtocolException.check(size > 0 && size <= maxCompressed, Rule.PACKET_PAYLOAD_SIZE,
                    "compressed payload of %s bytes for %d pages (bound %d)",
                    Integer.toUnsignedString(size), normal, maxCompressed);
            if (compressedIn == null) {
                compressedIn = ByteBuffer.allocateDirect(maxCompressed);
                decodedOut = ByteBuffer.allocateDirect(Wire.MULTIFD_PACKET_SIZE);
                decompressor = PageDecompressor.create(compression);
            }
            compressedIn.clear().limit(size);
            state = State.COMPRESSED;
        }
        return false;
    }

    private void copyPayload(ByteBuffer in) {
        MemorySegment src = MemorySegment.ofBuffer(in);
        long srcOff = 0;
        long avail = in.remaining();
        while (avail > 0 && page < normal) {
            int n = (int) Math.min(avail, Wire.PAGE_SIZE - pageFill);
            MemorySegment.copy(src, srcOff, target, offsets[page] + pageFill, n);
            srcOff += n;
            avail -= n;
            pageFill += n;
            if (pageFill == Wire.PAGE_SIZE) {
                page++;
                pageFill = 0;
            }
        }
        in.position(in.position() + (int) srcOff);
    }

    private void decompress() {
        compressedIn.flip();
        decodedOut.clear().limit(normal * Wire.PAGE_SIZE);
        decompressor.decompress(compressedIn, decodedOut);
        MemorySegment src = MemorySegment.ofBuffer(decodedOut.flip());
        for (int i = 0; i < normal; i++) {
            MemorySegment.copy(src, (long) i * Wire.PAGE_SIZE, target, offsets[i], Wire.PAGE_SIZE);
        }
        page = normal;
    }

    /** @return true when the finished packet carried SYNC */
    private boolean finishPacket() {
        if (normal > 0) {
            sink.normalPagesWritten(block, offsets, 0, normal);
        }
        listener.onPacket(channelId, normal, zero,
                (long) normal * Wire.PAGE_SIZE);
        boolean wasSync = sync;
        block = null;
        target = null;
        normal = 0;
        zero = 0;
        sync = false;
        startPacket();
        if (wasSync) {
            listener.onSync(channelId);
            return true;
        }
        return false;
    }

    /**
     * The peer closed the channel. At a packet boundary that is the normal end (§3.7);
     * inside a hello, header or payload it is an error.
     */
    public void onClose() {
        boolean boundary = state == State.PREFIX && gather.collected() == 0;
        if (!boundary && state != State.FAILED) {
            throw new ProtocolException(Rule.CHANNEL_TRUNCATED,
                    "multifd channel " + channelId + " closed inside a " + switch (state) {
                        case HELLO -> "hello";
                        case PREFIX, HEADER -> "packet header";
                        default -> "packet payload";
                    });
        }
    }

    /** Releases native resources (the decompressor). */
    public void close() {
        if (decompressor != null) {
            decompressor.close();
        }
    }
}
