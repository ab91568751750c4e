package dev.multifdcolo.secondary.stream;

import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.RamFlags;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.SectionType;
import dev.multifdcolo.wire.Wire;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;

/**
 * Non-blocking decoder of the main channel (QEVM stream, §7): header, configuration, commands,
 * the "ram" section's records, and the device sections that follow RAM.
 *
 * <p>Device sections have no length prefix and their layouts are machine specific, so they are
 * not parsed: from the first FULL section on, bytes are kept verbatim until they end in
 * {@code EOF, VMDESCRIPTION}, and the VMDESCRIPTION's device list (names, instance ids and
 * versions, in section order) must walk the kept bytes section by section (§7.7). That finds the
 * end for any machine without knowing any device.
 *
 * <p>In {@link #beginLiveState() live-state} mode (a COLO checkpoint, §9.4) the decoder reads RAM
 * sections until EOF and stops there.
 */
public final class MainStreamDecoder {

    /** Session callbacks (all on the main channel's event loop). */
    public interface Listener {
        default void onConfiguration(String machine) {
        }

        default void onCommand(Command command, ByteBuffer data) {
        }

        /** The RAMBlock list; the listener allocates memory or throws MEM_SIZE_LIMIT. */
        void onMemSize(List<BlockSpec> blocks);

        /**
         * As {@link #onMemSize}, for a listener that allocates asynchronously (blocking I/O kept off
         * the event loop): return true and the decoder pauses until {@link MainStreamDecoder#resume()}.
         */
        default boolean onMemSizeMayPause(List<BlockSpec> blocks) {
            onMemSize(blocks);
            return false;
        }

        /**
         * A barrier point for multifd (EOS in legacy mode, MULTIFD_FLUSH in modern mode).
         *
         * @return true if the decoder must pause until {@link MainStreamDecoder#resume()}
         */
        boolean onBarrier();

        /** A RAM section (START/PART/END) ended with EOS and a correct footer. */
        default void onRamSectionEnd(int sectionType) {
        }

        /** Main-channel pages applied (accounting). */
        default void onMainPages(int normal, int zero) {
        }

        /** Precopy finished: verbatim device sections and the VMDESCRIPTION JSON (may be null). */
        default void onPrecopyEnd(byte[] deviceState, String vmdesc) {
        }

        /** Live state (COLO checkpoint RAM) finished with EOF. */
        default void onLiveStateEnd() {
        }
    }

    /** Limits and expectations for one replica. */
    public record Options(int multifdChannels, FlushMode flushMode, long maxDeviceState, int maxVmdesc,
                          String expectedMachine, byte[] uuid) {
        public Options {
            uuid = uuid.clone();
        }
    }

    private enum S {
        HEADER, CONFIG_TYPE, CONFIG_LEN, CONFIG_NAME, SUB_PEEK, SUB_NAME_LEN, SUB_NAME, SUB_VERSION, SUB_BODY,
        CAP_COUNT, CAP_LEN, CAP_NAME,
        RECORD_TYPE, SECTION_ID, FULL_HEAD, FULL_NAME, FULL_TAIL, COMMAND_HEAD, COMMAND_DATA,
        RAM_WORD, MEMSZ_NAME_LEN, MEMSZ_NAME, MEMSZ_LEN, BLOCK_NAME_LEN, BLOCK_NAME, ZERO_FILL, PAGE_DATA,
        FOOTER, AFTER_EOF, VMDESC_LEN, VMDESC_BODY, DEVICES, DONE, FAILED
    }

    private static final int GATHER_MAX = 512;
    private static final int MAX_BLOCKS = 4096;
    private static final int MAX_CAPABILITIES = 256;

    private final Options opt;
    private final RamSink sink;
    private final Listener listener;
    private final Gather g = new Gather(GATHER_MAX);
    private final boolean multifd;

    private S s = S.HEADER;
    private boolean live;
    private Boolean modern;        // null while AUTO is undecided
    private String machine;
    // sections
    private int ramSectionId = -1;
    private int sectionType;
    private int sectionId;
    private boolean inSetupSection;
    private boolean sawFlushInSetup;
    private boolean memSizeSeen;
    private boolean ramEnded;
    // START/FULL header being read
    private int headType;
    private int headId;
    private String headName;
    // configuration subsection
    private String subName;
    private int capsLeft;
    // RAM record being read
    private int recordFlags;
    private long recordOffset;
    private RamBlock current;       // persists across sections and checkpoints (§7.5)
    private MemorySegment pageTarget;
    private int pageFill;
    private final long[] one = new long[1];
    // MEM_SIZE
    private long memRemaining;
    private String memName;
    private final List<BlockSpec> memBlocks = new ArrayList<>();
    // commands
    private Command command;
    // barrier
    private boolean pausedAtBarrier;
    private S afterBarrier;
    // device phase
    private byte[] dev = new byte[0];
    private int devLen;
    private byte[] vmdesc;
    private int vmdescFill;
    private int mainNormal;
    private int mainZero;

    public MainStreamDecoder(Options options, RamSink sink, Listener listener) {
        this.opt = options;
        this.sink = sink;
        this.listener = listener;
        this.multifd = options.multifdChannels() > 0;
        this.maxCandidates = (int) Math.max(4096, options.maxDeviceState() / 64);
        this.modern = switch (options.flushMode()) {
            case LEGACY -> false;
            case MODERN -> true;
            case AUTO -> null;
        };
        g.expect(8);
    }

    /** Switches to reading one COLO checkpoint's live state: RAM sections until EOF (§9.4). */
    public void beginLiveState() {
        if (s != S.DONE) {
            throw new IllegalStateException("live state only after the previous stream ended, state " + s);
        }
        live = true;
        s = S.RECORD_TYPE;
        g.expect(1);
    }

    /** True once the flush mode is known (always, unless AUTO before the setup section's sync). */
    public Boolean modernFlush() {
        return modern;
    }

    public String machine() {
        return machine;
    }

    /** Continues after a barrier released by the session. */
    public void resume() {
        if (!pausedAtBarrier) {
            throw new IllegalStateException("not paused");
        }
        pausedAtBarrier = false;
        s = afterBarrier;
    }

    public boolean pausedAtBarrier() {
        return pausedAtBarrier;
    }

    public Progress feed(ByteBuffer in) {
        if (pausedAtBarrier) {
            return Progress.PAUSED;
        }
        try {
            return decode(in);
        } catch (ProtocolException e) {
            s = S.FAILED;
            throw e;
        }
    }

    private Progress decode(ByteBuffer in) {
        while (in.hasRemaining() || s == S.DONE) {
            switch (s) {
                case DONE -> {
                    return Progress.DONE;
                }
                case FAILED -> throw new IllegalStateException("decoder failed earlier");
                case PAGE_DATA -> {
                    int n = Math.min(in.remaining(), Wire.PAGE_SIZE - pageFill);
                    MemorySegment.copy(MemorySegment.ofBuffer(in), 0, pageTarget, recordOffset + pageFill, n);
                    in.position(in.position() + n);
                    pageFill += n;
                    if (pageFill == Wire.PAGE_SIZE) {
                        one[0] = recordOffset;
                        sink.normalPagesWritten(current, one, 0, 1);
                        mainNormal++;
                        nextRamRecord();
                    }
                }
                case DEVICES -> {
                    appendDevices(in);
                    if (tryFinishDevices()) {
                        s = S.DONE;
                    }
                }
                case VMDESC_BODY -> {
                    int n = Math.min(in.remaining(), vmdesc.length - vmdescFill);
                    in.get(vmdesc, vmdescFill, n);
                    vmdescFill += n;
                    if (vmdescFill == vmdesc.length) {
                        finishPrecopy(Arrays.copyOf(dev, devLen), new String(vmdesc, StandardCharsets.UTF_8));
                    }
                }
                default -> {
                    if (!g.fill(in)) {
                        return Progress.NEED_MORE;
                    }
                    if (step(g.buf())) {
                        return Progress.PAUSED;
                    }
                }
            }
        }
        return Progress.NEED_MORE;
    }

    /** Handles one gathered item. @return true to pause at a barrier */
    private boolean step(ByteBuffer b) {
        switch (s) {
            case HEADER -> {
                int magic = b.getInt(0);
                ProtocolException.check(magic == Wire.QEVM_MAGIC, Rule.STREAM_MAGIC,
                        "not a migration stream: magic 0x%08x", magic);
                int version = b.getInt(4);
                ProtocolException.check(version != Wire.STREAM_VERSION_V2, Rule.STREAM_VERSION,
                        "stream version 2 is obsolete");
                ProtocolException.check(version == Wire.STREAM_VERSION, Rule.STREAM_VERSION,
                        "unsupported stream version %d", version);
                expect(S.CONFIG_TYPE, 1);
            }
            case CONFIG_TYPE -> {
                int t = b.get(0) & 0xff;
                ProtocolException.check(t == SectionType.CONFIGURATION, Rule.CONFIG_MISSING,
                        "expected the configuration section (0x07), got 0x%02x", t);
                expect(S.CONFIG_LEN, 4);
            }
            case CONFIG_LEN -> {
                int len = b.getInt(0);
                ProtocolException.check(len > 0 && len <= 255, Rule.CONFIG_MACHINE,
                        "machine type name length %s", Integer.toUnsignedString(len));
                expect(S.CONFIG_NAME, len);
            }
            case CONFIG_NAME -> {
                machine = string(b);
                ProtocolException.check(opt.expectedMachine() == null || opt.expectedMachine().equals(machine),
                        Rule.CONFIG_MACHINE, "machine type '%s', this replica expects '%s'", machine, opt.expectedMachine());
                listener.onConfiguration(machine);
                expect(S.SUB_PEEK, 1);
            }
            case SUB_PEEK -> {
                int t = b.get(0) & 0xff;
                if (t == SectionType.SUBSECTION) {
                    expect(S.SUB_NAME_LEN, 1);
                } else {
                    return record(t);      // the configuration is over; this byte starts a record
                }
            }
            case SUB_NAME_LEN -> expect(S.SUB_NAME, countedLength(b, Rule.CONFIG_SUBSECTION));
            case SUB_NAME -> {
                subName = string(b);
                expect(S.SUB_VERSION, 4);
            }
            case SUB_VERSION -> {
                switch (subName) {
                    case "configuration/target-page-bits" -> expect(S.SUB_BODY, 4);
                    case "configuration/uuid" -> expect(S.SUB_BODY, 16);
                    case "configuration/capabilities" -> expect(S.CAP_COUNT, 4);
                    default -> throw new ProtocolException(Rule.CONFIG_SUBSECTION,
                            "unknown configuration subsection '" + subName + "'");
                }
            }
            case SUB_BODY -> {
                if (subName.equals("configuration/target-page-bits")) {
                    int bits = b.getInt(0);
                    ProtocolException.check(bits == Wire.PAGE_SHIFT, Rule.CONFIG_PAGE_BITS,
                            "source target page bits %d, ours %d", bits, Wire.PAGE_SHIFT);
                } else {
                    byte[] u = new byte[16];
                    b.get(0, u);
                    ProtocolException.check(Arrays.equals(u, opt.uuid()), Rule.CONFIG_UUID,
                            "source UUID %s, expected %s", HexFormat.of().formatHex(u), HexFormat.of().formatHex(opt.uuid()));
                }
                expect(S.SUB_PEEK, 1);
            }
            case CAP_COUNT -> {
                capsLeft = b.getInt(0);
                ProtocolException.check(capsLeft >= 0 && capsLeft <= MAX_CAPABILITIES, Rule.CONFIG_SUBSECTION,
                        "capability count %s", Integer.toUnsignedString(capsLeft));
                expect(capsLeft == 0 ? S.SUB_PEEK : S.CAP_LEN, 1);
            }
            case CAP_LEN -> expect(S.CAP_NAME, countedLength(b, Rule.CONFIG_SUBSECTION));
            case CAP_NAME -> {
                // Every capability QEMU lists here (x-ignore-shared, mapped-ram, ...) changes the
                // RAM wire format in ways we do not implement.
                throw new ProtocolException(Rule.CONFIG_CAPABILITY,
                        "the source requires capability '" + string(b) + "'");
            }
            case RECORD_TYPE -> {
                return record(b.get(0) & 0xff);
            }
            case SECTION_ID -> {
                int id = b.getInt(0);
                ProtocolException.check(id == ramSectionId && ramSectionId >= 0, Rule.SECTION_UNKNOWN_ID,
                        "section %s for unknown section id %d", sectionType == SectionType.PART ? "PART" : "END", id);
                ProtocolException.check(!ramEnded || live, Rule.SECTION_ORDER, "RAM section after the RAM END section");
                sectionId = id;
                inSetupSection = false;
                expectRamWord();
            }
            case FULL_HEAD -> {
                headId = b.getInt(0);
                expect(S.FULL_NAME, countedLength(b, 4, Rule.SECTION_HANDLER));
            }
            case FULL_NAME -> {
                headName = string(b);
                expect(S.FULL_TAIL, 8);
            }
            case FULL_TAIL -> {
                return sectionHead(b.getInt(0), b.getInt(4));
            }
            case COMMAND_HEAD -> {
                int id = b.getShort(0) & 0xffff;
                int len = b.getShort(2) & 0xffff;
                command = Command.of(id);
                ProtocolException.check(command != null && command != Command.INVALID, Rule.COMMAND_UNKNOWN,
                        "unknown command %d (length %d)", id, len);
                ProtocolException.check(command.fixedLength < 0 || command.fixedLength == len, Rule.COMMAND_LENGTH,
                        "command %s with length %d, expected %d", command, len, command.fixedLength);
                switch (command) {
                    case OPEN_RETURN_PATH, PING, ENABLE_COLO, SWITCHOVER_START -> { }
                    default -> throw new ProtocolException(Rule.COMMAND_UNSUPPORTED,
                            "command " + command + " (postcopy) is not supported");
                }
                if (len == 0) {
                    listener.onCommand(command, ByteBuffer.allocate(0));
                    expect(S.RECORD_TYPE, 1);
                } else {
                    expect(S.COMMAND_DATA, len);
                }
            }
            case COMMAND_DATA -> {
                listener.onCommand(command, b.duplicate());
                expect(S.RECORD_TYPE, 1);
            }
            case RAM_WORD -> {
                return ramRecord(b.getLong(0));
            }
            case MEMSZ_NAME_LEN -> expect(S.MEMSZ_NAME, countedLength(b, Rule.MEM_SIZE_BLOCK));
            case MEMSZ_NAME -> {
                memName = string(b);
                expect(S.MEMSZ_LEN, 8);
            }
            case MEMSZ_LEN -> {
                long len = b.getLong(0);
                ProtocolException.check(len > 0 && len % Wire.PAGE_SIZE == 0, Rule.MEM_SIZE_BLOCK,
                        "block '%s' has length %s", memName, Long.toUnsignedString(len));
                ProtocolException.check(len <= memRemaining, Rule.MEM_SIZE_TOTAL,
                        "block '%s' of %d bytes exceeds the %d bytes left of the announced total", memName, len, memRemaining);
                ProtocolException.check(memBlocks.size() < MAX_BLOCKS, Rule.MEM_SIZE_BLOCK, "more than %d blocks", MAX_BLOCKS);
                for (BlockSpec bs : memBlocks) {
                    ProtocolException.check(!bs.name().equals(memName), Rule.MEM_SIZE_BLOCK, "block '%s' listed twice", memName);
                }
                memBlocks.add(new BlockSpec(memName, len));
                memRemaining -= len;
                if (memRemaining == 0) {
                    expectRamWord();
                    if (listener.onMemSizeMayPause(List.copyOf(memBlocks))) {
                        pausedAtBarrier = true;       // resumed like a barrier, into the next RAM word
                        afterBarrier = s;
                        return true;
                    }
                } else {
                    expect(S.MEMSZ_NAME_LEN, 1);
                }
            }
            case BLOCK_NAME_LEN -> expect(S.BLOCK_NAME, countedLength(b, Rule.RAM_BLOCK));
            case BLOCK_NAME -> {
                String name = string(b);
                RamBlock blk = sink.block(name);
                ProtocolException.check(blk != null, Rule.RAM_BLOCK, "unknown RAMBlock '%s'", name);
                current = blk;
                pageRecordBody();
            }
            case ZERO_FILL -> {
                int fill = b.get(0) & 0xff;
                ProtocolException.check(fill == 0, Rule.ZERO_FILL, "ZERO record for 0x%x with fill byte 0x%02x", recordOffset, fill);
                one[0] = recordOffset;
                sink.zeroPages(current, one, 0, 1);
                mainZero++;
                nextRamRecord();
            }
            case FOOTER -> {
                int t = b.get(0) & 0xff;
                int id = b.getInt(1);
                ProtocolException.check(t == SectionType.FOOTER && id == sectionId, Rule.SECTION_FOOTER,
                        "expected footer for section %d, got type 0x%02x id %d", sectionId, t, id);
                if (mainNormal + mainZero > 0) {
                    listener.onMainPages(mainNormal, mainZero);
                    mainNormal = mainZero = 0;
                }
                listener.onRamSectionEnd(sectionType);
                expect(S.RECORD_TYPE, 1);
            }
            case AFTER_EOF -> {
                int t = b.get(0) & 0xff;
                ProtocolException.check(t == SectionType.VMDESCRIPTION, Rule.SECTION_ORDER,
                        "expected VMDESCRIPTION after EOF, got 0x%02x", t);
                expect(S.VMDESC_LEN, 4);
            }
            case VMDESC_LEN -> {
                int len = b.getInt(0);
                ProtocolException.check(len >= 0 && len <= opt.maxVmdesc(), Rule.VMDESC_LIMIT,
                        "VMDESCRIPTION of %s bytes (bound %d)", Integer.toUnsignedString(len), opt.maxVmdesc());
                vmdesc = new byte[len];
                vmdescFill = 0;
                if (len == 0) {
                    finishPrecopy(new byte[0], "");
                } else {
                    s = S.VMDESC_BODY;
                }
            }
            default -> throw new IllegalStateException("unexpected state " + s);
        }
        return false;
    }

    private boolean record(int type) {
        switch (type) {
            case SectionType.EOF -> {
                if (live) {
                    s = S.DONE;
                    listener.onLiveStateEnd();
                } else {
                    expect(S.AFTER_EOF, 1);
                }
            }
            case SectionType.START, SectionType.FULL -> {
                headType = type;
                expect(S.FULL_HEAD, 5);
            }
            case SectionType.PART, SectionType.END -> {
                sectionType = type;
                expect(S.SECTION_ID, 4);
            }
            case SectionType.COMMAND -> {
                ProtocolException.check(!live, Rule.SECTION_ORDER, "command inside a COLO checkpoint");
                expect(S.COMMAND_HEAD, 4);
            }
            default -> throw new ProtocolException(type == SectionType.VMDESCRIPTION || type == SectionType.CONFIGURATION
                    || type == SectionType.FOOTER || type == SectionType.SUBSECTION ? Rule.SECTION_ORDER : Rule.SECTION_TYPE,
                    String.format("record type 0x%02x not allowed here", type));
        }
        return false;
    }

    /** START/FULL header complete. */
    private boolean sectionHead(int instance, int version) {
        int type = headType;
        headType = 0;
        boolean ram = headName.equals(Wire.RAM_IDSTR) && instance == 0;
        if (type == SectionType.START) {
            ProtocolException.check(ram, Rule.SECTION_HANDLER,
                    "iterative section '%s' instance %d is not supported (only \"ram\")", headName, instance);
            ProtocolException.check(version == Wire.RAM_SECTION_VERSION, Rule.SECTION_VERSION,
                    "\"ram\" section version %d, expected %d", version, Wire.RAM_SECTION_VERSION);
            ProtocolException.check(ramSectionId < 0 && !live, Rule.SECTION_ORDER, "a second RAM START section");
            ramSectionId = headId;
            sectionId = headId;
            sectionType = type;
            inSetupSection = true;
            expectRamWord();
            return false;
        }
        // FULL: a device section. RAM never comes as FULL, and a checkpoint's live state has none.
        ProtocolException.check(!ram, Rule.SECTION_HANDLER, "\"ram\" as a FULL section");
        ProtocolException.check(!live, Rule.SECTION_ORDER, "device section '%s' inside a checkpoint's live state", headName);
        ProtocolException.check(memSizeSeen, Rule.SECTION_ORDER, "device section '%s' before any RAM", headName);
        // Re-encode the header we consumed, byte for byte, and keep everything from here verbatim.
        byte[] name = headName.getBytes(StandardCharsets.ISO_8859_1);
        ByteBuffer h = ByteBuffer.allocate(1 + 4 + 1 + name.length + 8);
        h.put((byte) type).putInt(headId).put((byte) name.length).put(name).putInt(instance).putInt(version).flip();
        devLen = 0;
        appendDevices(h);
        s = S.DEVICES;
        return false;
    }

    private boolean ramRecord(long word) {
        int flags = RamFlags.flags(word);
        recordOffset = RamFlags.offset(word);
        recordFlags = flags;
        int kind = flags & ~RamFlags.CONTINUE;
        switch (kind) {
            case RamFlags.MEM_SIZE -> {
                ProtocolException.check(inSetupSection && !memSizeSeen, Rule.MEM_SIZE_REPEATED,
                        "RAMBlock list outside the setup section or repeated");
                memSizeSeen = true;
                memRemaining = recordOffset;
                ProtocolException.check(memRemaining > 0, Rule.MEM_SIZE_TOTAL, "announced RAM total of %s bytes",
                        Long.toUnsignedString(memRemaining));
                if (memRemaining > 0) {
                    expect(S.MEMSZ_NAME_LEN, 1);
                }
            }
            case RamFlags.ZERO, RamFlags.PAGE -> {
                ProtocolException.check(memSizeSeen, Rule.RAM_BEFORE_SETUP, "page record before the RAMBlock list");
                if ((flags & RamFlags.CONTINUE) != 0) {
                    ProtocolException.check(current != null, Rule.RAM_CONTINUE, "CONTINUE page 0x%x with no current RAMBlock", recordOffset);
                    pageRecordBody();
                } else {
                    expect(S.BLOCK_NAME_LEN, 1);
                }
            }
            case RamFlags.EOS -> {
                boolean barrier = false;
                if (multifd) {
                    if (inSetupSection) {
                        if (modern == null) {
                            modern = false;            // AUTO: no MULTIFD_FLUSH in the setup section
                        } else if (modern) {
                            ProtocolException.check(sawFlushInSetup, Rule.SYNC_PROTOCOL,
                                    "the RAM setup section ended without MULTIFD_FLUSH: the source uses legacy"
                                            + " sync (QEMU 7.2, or multifd-flush-after-each-section=on); set flush-mode"
                                            + " legacy or auto");
                        }
                    }
                    barrier = !modern;
                }
                return barrierThen(barrier, S.FOOTER, 5);
            }
            case RamFlags.MULTIFD_FLUSH -> {
                if (!multifd) {
                    return barrierThen(false, S.RAM_WORD, 8);   // no-op without multifd (§4.3)
                }
                if (inSetupSection) {
                    sawFlushInSetup = true;
                }
                if (modern == null) {
                    modern = true;
                }
                ProtocolException.check(modern, Rule.SYNC_PROTOCOL,
                        "MULTIFD_FLUSH received but flush-mode is legacy: the source uses modern sync"
                                + " (QEMU 8.1+ defaults); set flush-mode modern or auto");
                return barrierThen(true, S.RAM_WORD, 8);
            }
            case RamFlags.FULL, RamFlags.XBZRLE, RamFlags.HOOK, RamFlags.COMPRESS_PAGE ->
                    throw new ProtocolException(Rule.RAM_UNSUPPORTED, String.format("RAM record flags 0x%x", flags));
            default -> throw new ProtocolException(Rule.RAM_FLAGS,
                    String.format("unknown combination of migration flags 0x%x", flags));
        }
        return false;
    }

    private boolean barrierThen(boolean barrier, S next, int nextLen) {
        if (mainNormal + mainZero > 0) {
            listener.onMainPages(mainNormal, mainZero);
            mainNormal = mainZero = 0;
        }
        g.expect(nextLen);
        if (barrier && listener.onBarrier()) {
            pausedAtBarrier = true;
            afterBarrier = next;
            s = next;
            return true;
        }
        s = next;
        return false;
    }

    /** Block known; offset checks, then the ZERO fill byte or the PAGE bytes. */
    private void pageRecordBody() {
        // the offset is a u64 on the wire: a top bit set is a negative long, not a small offset
        ProtocolException.check(recordOffset >= 0 && recordOffset <= current.length() - Wire.PAGE_SIZE, Rule.RAM_OFFSET,
                "illegal RAM offset 0x%x in block %s of 0x%x bytes", recordOffset, current.name(), current.length());
        if ((recordFlags & RamFlags.ZERO) != 0) {
            expect(S.ZERO_FILL, 1);
        } else {
            pageTarget = sink.pageTarget(current);
            pageFill = 0;
            s = S.PAGE_DATA;
        }
    }

    private void nextRamRecord() {
        expectRamWord();
    }

    private void expectRamWord() {
        expect(S.RAM_WORD, 8);
        if (sectionType == SectionType.END && !live) {
            ramEnded = true;
        }
    }

    private void expect(S next, int n) {
        s = next;
        g.expect(n);
    }

    private static int countedLength(ByteBuffer b, Rule rule) {
        return countedLength(b, 0, rule);
    }

    private static int countedLength(ByteBuffer b, int at, Rule rule) {
        int len = b.get(at) & 0xff;
        ProtocolException.check(len > 0, rule, "empty counted string");
        return len;
    }

    private static String string(ByteBuffer b) {
        byte[] a = new byte[b.remaining()];
        b.get(b.position(), a);
        return new String(a, StandardCharsets.ISO_8859_1);
    }

    // ------------------------------------------------------------------ device phase

    private void appendDevices(ByteBuffer in) {
        int n = in.remaining();
        long need = (long) devLen + n;
        ProtocolException.check(need <= opt.maxDeviceState(), Rule.DEVICE_STATE_LIMIT,
                "device state exceeds %d bytes without a valid end", opt.maxDeviceState());
        if (need > dev.length) {
            dev = Arrays.copyOf(dev, (int) Math.min(opt.maxDeviceState(), Math.max(need, Math.max(64 * 1024, 2L * dev.length))));
        }
        in.get(dev, devLen, n);
        devLen += n;
    }

    /**
     * Candidate vmdesc starts ({@code 00 06 len}) still able to end the stream: {@code end << 32 |
     * start} in a min-heap on the position their JSON would end at. 8 bytes per candidate, and at
     * most {@link #maxCandidates} of them (a boxed map of lists took ~30 heap bytes per
     * device-state byte for bytes full of {@code 00 06 00 00 00 02}: 2 GB for the 64 MiB bound).
     */
    private long[] candidates = new long[16];
    private int candidateCount;
    private final int maxCandidates;
    private int scanned;          // device bytes already searched for candidates
    private int parseAttempts;
    private static final int MAX_PARSE_ATTEMPTS = 64;

    /**
     * Looks for {@code EOF 0x06 len JSON} ending exactly at the end of what arrived (the source
     * sends nothing after the vmdesc until we answer), and accepts it only if the JSON's device
     * list walks the kept sections. Each byte is searched once, a candidate is dropped once the
     * kept bytes pass its end (more bytes only make them longer), and the number of JSON parses is
     * capped, so a hostile stream cannot make this quadratic or make it hold more than a fraction
     * of the device-state bound.
     */
    private boolean tryFinishDevices() {
        for (; scanned + 6 <= devLen; scanned++) {
            int p = scanned;
            if (dev[p] == 0 && dev[p + 1] == SectionType.VMDESCRIPTION) {
                long len = ((dev[p + 2] & 0xffL) << 24) | ((dev[p + 3] & 0xffL) << 16) | ((dev[p + 4] & 0xffL) << 8)
                        | (dev[p + 5] & 0xffL);
                long end = p + 6 + len;
                if (len > 1 && len <= opt.maxVmdesc() && end <= opt.maxDeviceState()) {
                    if (candidateCount >= maxCandidates) {   // not check(...): no boxing per candidate
                        throw new ProtocolException(Rule.DEVICE_STATE_END, "more than " + maxCandidates
                                + " possible VMDESCRIPTION starts pending in the device state");
                    }
                    pushCandidate(end << 32 | p);
                }
            }
        }
        boolean json = devLen >= 7 && dev[devLen - 1] == '}';
        while (candidateCount > 0 && (int) (candidates[0] >>> 32) <= devLen) {
            long c = popCandidate();
            int p = (int) c;
            if ((int) (c >>> 32) < devLen || !json || dev[p + 6] != '{') {
                continue;         // the kept bytes went past its end: it can never end the stream
            }
            ProtocolException.check(++parseAttempts <= MAX_PARSE_ATTEMPTS, Rule.DEVICE_STATE_END,
                    "more than %d VMDESCRIPTION candidates in the device state failed to match it", MAX_PARSE_ATTEMPTS);
            String text = new String(dev, p + 6, devLen - p - 6, StandardCharsets.UTF_8);
            if (DeviceChain.walks(dev, p, text)) {
                finishPrecopy(Arrays.copyOf(dev, p), text);
                return true;
            }
        }
        return false;
    }

    private void pushCandidate(long c) {
        if (candidateCount == candidates.length) {
            candidates = Arrays.copyOf(candidates, Math.min(maxCandidates, 2 * candidates.length));
        }
        int i = candidateCount++;
        while (i > 0) {
            int parent = (i - 1) >>> 1;
            if (candidates[parent] <= c) {
                break;
            }
            candidates[i] = candidates[parent];
            i = parent;
        }
        candidates[i] = c;
    }

    private long popCandidate() {
        long top = candidates[0];
        long last = candidates[--candidateCount];
        int i = 0;
        while (true) {
            int child = 2 * i + 1;
            if (child >= candidateCount) {
                break;
            }
            if (child + 1 < candidateCount && candidates[child + 1] < candidates[child]) {
                child++;
            }
            if (candidates[child] >= last) {
                break;
            }
            candidates[i] = candidates[child];
            i = child;
        }
        if (candidateCount > 0) {
            candidates[i] = last;
        }
        return top;
    }

    private void finishPrecopy(byte[] devices, String json) {
        s = S.DONE;
        dev = new byte[0];
        devLen = 0;
        scanned = 0;
        candidateCount = 0;
        vmdesc = null;
        listener.onPrecopyEnd(devices, json);
    }

    /**
     * The main channel closed. Normal only when the stream is complete, or right after EOF for a
     * source that sends no VMDESCRIPTION.
     */
    public void onClose() {
        switch (s) {
            case DONE, FAILED -> { }
            case AFTER_EOF -> {
                if (g.collected() == 0) {
                    finishPrecopy(new byte[0], null);
                    return;
                }
                throw truncated();
            }
            case DEVICES -> {
                if (devLen > 0 && dev[devLen - 1] == 0 && DeviceChain.walks(dev, devLen - 1, null)) {
                    finishPrecopy(Arrays.copyOf(dev, devLen - 1), null);
                    return;
                }
                throw new ProtocolException(Rule.DEVICE_STATE_END,
                        "main channel closed after " + devLen + " bytes of device state without EOF + VMDESCRIPTION");
            }
            case RECORD_TYPE, SUB_PEEK -> {
                if (g.collected() == 0) {
                    // between two top-level records: nothing is cut in half, the stream just stops
                    throw new ProtocolException(Rule.CHANNEL_CLOSED, "main channel closed between records (state "
                            + s.name().toLowerCase() + ") before the migration finished");
                }
                throw truncated();
            }
            default -> throw truncated();
        }
    }

    public boolean done() {
        return s == S.DONE;
    }

    private ProtocolException truncated() {
        return new ProtocolException(Rule.CHANNEL_TRUNCATED, "main channel closed in state " + s.name().toLowerCase());
    }
}
