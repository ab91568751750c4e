package dev.multifdcolo.secondary;

import dev.multifdcolo.secondary.RejectionRig.Rejects;
import dev.multifdcolo.secondary.RejectionRig.Setup;
import dev.multifdcolo.secondary.StreamBytes.Migration;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.RamFlags;
import dev.multifdcolo.wire.Rule;
import dev.multifdcolo.wire.Wire;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;

import static dev.multifdcolo.secondary.RejectionRig.accepts;
import static dev.multifdcolo.secondary.RejectionRig.rejects;
import static dev.multifdcolo.secondary.RejectionRig.says;
import static dev.multifdcolo.secondary.StreamBytes.MAIN_PART;
import static dev.multifdcolo.secondary.StreamBytes.PAGE;
import static dev.multifdcolo.secondary.StreamBytes.RAM;
import static dev.multifdcolo.secondary.StreamBytes.RAM_ID;
import static dev.multifdcolo.secondary.StreamBytes.RAM_LEN;
import static dev.multifdcolo.secondary.StreamBytes.cat;
import static dev.multifdcolo.secondary.StreamBytes.pattern;
import static dev.multifdcolo.secondary.StreamBytes.prefix;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * Every main-channel rule (PROTOCOL.md §7, §4 flush modes): each test takes the valid plain
 * stream of {@link StreamBytes#plain()}, changes one thing, and asserts the decoder's rule and
 * message in every read split of {@link RejectionRig#SPLITS}. The bytes after the defect are the
 * valid rest of the stream, so the rejection is at the defect and not at some later confusion.
 */
class RejectionMainStreamTest {
    static final Migration PLAIN = StreamBytes.plain();
    static final Setup SETUP = Setup.plain();

    /** The plain stream with its PART section replaced. */
    static byte[] withPart(StreamBytes part) {
        return PLAIN.withMainPart(MAIN_PART, part.toBytes()).main();
    }

    /** Everything after the configuration of the plain stream: setup, PART, END, devices. */
    static byte[] afterConfiguration() {
        List<byte[]> p = PLAIN.mainParts();
        return cat(new StreamBytes().ramSetup(false).toBytes(), p.get(1), p.get(2), p.get(3));
    }

    /** Everything after the setup section. */
    static byte[] afterSetup() {
        List<byte[]> p = PLAIN.mainParts();
        return cat(p.get(1), p.get(2), p.get(3));
    }

    static ProtocolException rejectsPlain(Rule rule, byte[] main) {
        return rejects(rule, main, SETUP);
    }

    // ------------------------------------------------------------------ controls

    @Test
    void theUnchangedStreamsAreAccepted() {
        accepts(PLAIN, SETUP);
        for (FlushMode mode : List.of(FlushMode.LEGACY, FlushMode.MODERN)) {
            for (Compression c : Compression.values()) {
                Migration m = StreamBytes.multifd(2, mode, c);
                accepts(m, Setup.of(m));
                accepts(m, Setup.of(m).withFlush(FlushMode.AUTO));
            }
        }
    }

    @Test
    void acceptedCommandsAndConfigurationSubsectionsPass() {
        byte[] uuid = new byte[16];
        Arrays.fill(uuid, (byte) 0x5a);
        byte[] main = cat(prefix().subsection("configuration/target-page-bits", 1).be32(Wire.PAGE_SHIFT)
                        .subsection("configuration/uuid", 1).bytes(uuid)
                        .subsection("configuration/capabilities", 1).be32(0)
                        .command(Command.OPEN_RETURN_PATH.id, new byte[0]).command(Command.PING.id, new byte[]{0, 0, 0, 1})
                        .command(Command.ENABLE_COLO.id, new byte[0]).command(Command.SWITCHOVER_START.id, new byte[0])
                        .toBytes(), afterConfiguration());
        for (RejectionRig.Split split : RejectionRig.SPLITS) {
            try (RejectionRig.Outcome o = RejectionRig.run(main, List.of(), SETUP.withUuid(uuid).withMachine("none"), split)) {
                assertEquals(List.of(Command.OPEN_RETURN_PATH, Command.PING, Command.ENABLE_COLO, Command.SWITCHOVER_START),
                        o.commands(), split.name());
            }
        }
    }

    @Test
    void aStreamWithoutVmdescriptionEndsAtItsEof() {
        // some sources suppress the VMDESCRIPTION: the device sections end with EOF and the close
        byte[] dev = PLAIN.mainParts().get(3);
        byte[] noDesc = Arrays.copyOf(dev, dev.length - new StreamBytes().vmdesc(StreamBytes.VMDESC).size());
        for (RejectionRig.Split split : RejectionRig.SPLITS) {
            try (RejectionRig.Outcome o = RejectionRig.run(PLAIN.withMainPart(3, noDesc).main(), List.of(), SETUP, split)) {
                assertArrayEquals(PLAIN.ram(), o.ram(), split.name());
                assertNull(o.vmdesc());
                assertEquals(noDesc.length - 1, o.deviceState().length, "device sections kept without the EOF");
            }
        }
    }

    // ------------------------------------------------------------------ §7.2 header

    @Test
    @Rejects(Rule.STREAM_MAGIC)
    void streamMagic() {
        byte[] main = PLAIN.main();
        main[3] = 'N';                                            // "QEVN"
        says(rejectsPlain(Rule.STREAM_MAGIC, main), "magic 0x5145564e");
    }

    @Test
    @Rejects(Rule.STREAM_VERSION)
    void streamVersion() {
        for (int v : new int[]{2, 4, 0, -1}) {
            byte[] main = PLAIN.main();
            main[4] = (byte) (v >>> 24);
            main[5] = (byte) (v >>> 16);
            main[6] = (byte) (v >>> 8);
            main[7] = (byte) v;
            ProtocolException e = rejectsPlain(Rule.STREAM_VERSION, main);
            says(e, v == 2 ? "version 2 is obsolete" : "unsupported stream version " + v);
        }
    }

    @Test
    @Rejects(Rule.CONFIG_MISSING)
    void configurationMissing() {
        // a source with send-configuration=off: the RAM START follows the header directly
        says(rejectsPlain(Rule.CONFIG_MISSING, cat(new StreamBytes().header().toBytes(), afterConfiguration())),
                "expected the configuration section (0x07), got 0x01");
    }

    // ------------------------------------------------------------------ §7.3 configuration

    @Test
    @Rejects(Rule.CONFIG_MACHINE)
    void configurationMachineLengthOutOfBounds() {
        for (int len : new int[]{0, 256, 0x7fffffff, 0x80000000, 0xffffffff}) {
            byte[] main = cat(new StreamBytes().header().u8(0x07).be32(len).bytes("none".getBytes()).toBytes(),
                    afterConfiguration());
            says(rejectsPlain(Rule.CONFIG_MACHINE, main), "machine type name length " + Integer.toUnsignedString(len));
        }
    }

    @Test
    @Rejects(Rule.CONFIG_MACHINE)
    void configurationMachineNotTheExpectedOne() {
        ProtocolException e = rejects(Rule.CONFIG_MACHINE, PLAIN.main(), SETUP.withMachine("pc-q35-7.2"));
        says(e, "machine type 'none'", "expects 'pc-q35-7.2'");
    }

    @Test
    @Rejects(Rule.CONFIG_SUBSECTION)
    void configurationSubsectionUnknownOrMalformed() {
        says(rejectsPlain(Rule.CONFIG_SUBSECTION, cat(prefix().subsection("configuration/frobnicate", 1).be32(0).toBytes(),
                afterConfiguration())), "unknown configuration subsection 'configuration/frobnicate'");
        // empty counted name
        says(rejectsPlain(Rule.CONFIG_SUBSECTION, cat(prefix().u8(0x05).u8(0).be32(1).toBytes(), afterConfiguration())),
                "empty counted string");
        // a capability count no source sends, including a "negative" u32
        for (int n : new int[]{257, 0x7fffffff, 0xffffffff}) {
            says(rejectsPlain(Rule.CONFIG_SUBSECTION, cat(prefix().subsection("configuration/capabilities", 1).be32(n)
                    .toBytes(), afterConfiguration())), "capability count " + Integer.toUnsignedString(n));
        }
        // an empty capability name
        says(rejectsPlain(Rule.CONFIG_SUBSECTION, cat(prefix().subsection("configuration/capabilities", 1).be32(1).u8(0)
                .toBytes(), afterConfiguration())), "empty counted string");
    }

    @Test
    @Rejects(Rule.CONFIG_PAGE_BITS)
    void configurationTargetPageBits() {
        says(rejectsPlain(Rule.CONFIG_PAGE_BITS, cat(prefix().subsection("configuration/target-page-bits", 1).be32(16)
                .toBytes(), afterConfiguration())), "source target page bits 16, ours 12");
    }

    @Test
    @Rejects(Rule.CONFIG_UUID)
    void configurationUuid() {
        byte[] uuid = new byte[16];
        for (int i = 0; i < 16; i++) {
            uuid[i] = (byte) (i * 0x11);
        }
        says(rejectsPlain(Rule.CONFIG_UUID, cat(prefix().subsection("configuration/uuid", 1).bytes(uuid).toBytes(),
                afterConfiguration())), "source UUID 00112233445566778899aabbccddeeff, expected 00000000000000000000000000000000");
    }

    @Test
    @Rejects(Rule.CONFIG_CAPABILITY)
    void configurationCapability() {
        says(rejectsPlain(Rule.CONFIG_CAPABILITY, cat(prefix().subsection("configuration/capabilities", 1).be32(1)
                .counted("x-ignore-shared").toBytes(), afterConfiguration())), "requires capability 'x-ignore-shared'");
    }

    // ------------------------------------------------------------------ §7.4 sections

    @Test
    @Rejects(Rule.SECTION_TYPE)
    void sectionTypeUnknown() {
        for (int t : new int[]{0x09, 0x10, 0x7d, 0x7f, 0xff}) {
            byte[] part = PLAIN.mainParts().get(MAIN_PART).clone();
            part[0] = (byte) t;
            says(rejectsPlain(Rule.SECTION_TYPE, PLAIN.withMainPart(MAIN_PART, part).main()),
                    String.format("record type 0x%02x not allowed here", t));
        }
    }

    @Test
    @Rejects(Rule.SECTION_UNKNOWN_ID)
    void sectionUnknownId() {
        byte[] part = PLAIN.mainParts().get(MAIN_PART).clone();
        part[4] = 7;                                              // PART id 7; "ram" is id 2
        says(rejectsPlain(Rule.SECTION_UNKNOWN_ID, PLAIN.withMainPart(MAIN_PART, part).main()),
                "section PART for unknown section id 7");
        byte[] end = PLAIN.mainParts().get(2).clone();
        end[4] = 3;
        says(rejectsPlain(Rule.SECTION_UNKNOWN_ID, PLAIN.withMainPart(2, end).main()), "section END for unknown section id 3");
        // PART before any START
        says(rejectsPlain(Rule.SECTION_UNKNOWN_ID, cat(prefix().toBytes(), afterSetup())), "unknown section id 2");
    }

    @Test
    @Rejects(Rule.SECTION_HANDLER)
    void sectionHandlerUnknown() {
        // an iterative section we do not implement (block migration)
        says(rejectsPlain(Rule.SECTION_HANDLER, cat(prefix().start(3, "block", 0, 1).toBytes(), afterConfiguration())),
                "iterative section 'block' instance 0 is not supported");
        // "ram" with another instance id
        says(rejectsPlain(Rule.SECTION_HANDLER, cat(prefix().start(RAM_ID, RAM, 1, 4).toBytes(), afterConfiguration())),
                "'ram' instance 1");
        // "ram" as a FULL section
        says(rejectsPlain(Rule.SECTION_HANDLER, PLAIN.withMainPart(3, cat(new StreamBytes().full(RAM_ID, RAM, 0, 4)
                .toBytes(), PLAIN.mainParts().get(3))).main()), "\"ram\" as a FULL section");
        // a FULL section with an empty idstr
        says(rejectsPlain(Rule.SECTION_HANDLER, PLAIN.withMainPart(3, cat(new StreamBytes().u8(0x04).be32(0).u8(0)
                .toBytes(), PLAIN.mainParts().get(3))).main()), "empty counted string");
    }

    @Test
    @Rejects(Rule.SECTION_VERSION)
    void sectionRamVersion() {
        for (int v : new int[]{3, 5, -1}) {
            says(rejectsPlain(Rule.SECTION_VERSION, cat(prefix().start(RAM_ID, RAM, 0, v).toBytes(),
                    Arrays.copyOfRange(afterConfiguration(), 17, afterConfiguration().length))),
                    "\"ram\" section version " + v + ", expected 4");
        }
    }

    @Test
    @Rejects(Rule.SECTION_FOOTER)
    void sectionFooter() {
        says(rejectsPlain(Rule.SECTION_FOOTER, withPart(new StreamBytes().part(RAM_ID).zero(RAM, 0).eos().footer(3))),
                "expected footer for section 2, got type 0x7e id 3");
        says(rejectsPlain(Rule.SECTION_FOOTER, withPart(new StreamBytes().part(RAM_ID).zero(RAM, 0).eos().u8(0x7f).be32(2))),
                "got type 0x7f id 2");
        // no footer at all: the END record follows the EOS directly
        says(rejectsPlain(Rule.SECTION_FOOTER, withPart(new StreamBytes().part(RAM_ID).zero(RAM, 0).eos())),
                "got type 0x03 id 2");
    }

    @Test
    @Rejects(Rule.SECTION_ORDER)
    void sectionOrder() {
        says(rejectsPlain(Rule.SECTION_ORDER, cat(prefix().ramSetup(false).ramSetup(false).toBytes(), afterSetup())),
                "a second RAM START section");
        List<byte[]> p = PLAIN.mainParts();
        says(rejectsPlain(Rule.SECTION_ORDER, cat(p.get(0), p.get(1), p.get(2), p.get(1), p.get(3))),
                "RAM section after the RAM END section");
        says(rejectsPlain(Rule.SECTION_ORDER, cat(prefix().toBytes(), p.get(3))), "device section 'timer' before any RAM");
        // records that exist but not at this place
        says(rejectsPlain(Rule.SECTION_ORDER, withPart(new StreamBytes().vmdesc(StreamBytes.VMDESC))),
                "record type 0x06 not allowed here");
        says(rejectsPlain(Rule.SECTION_ORDER, withPart(new StreamBytes().configuration("none"))),
                "record type 0x07 not allowed here");
        says(rejectsPlain(Rule.SECTION_ORDER, withPart(new StreamBytes().footer(RAM_ID))), "record type 0x7e not allowed here");
        says(rejectsPlain(Rule.SECTION_ORDER, withPart(new StreamBytes().subsection("timer/icount", 1))),
                "record type 0x05 not allowed here");
        // EOF must be followed by the VMDESCRIPTION trailer (or by nothing)
        says(rejectsPlain(Rule.SECTION_ORDER, cat(p.get(0), p.get(1), p.get(2), new StreamBytes().eof().end(RAM_ID).toBytes())),
                "expected VMDESCRIPTION after EOF, got 0x03");
    }

    // ------------------------------------------------------------------ §7.5 RAM records

    @Test
    @Rejects(Rule.RAM_FLAGS)
    void ramFlagCombination() {
        int[] bad = {0, RamFlags.CONTINUE, RamFlags.ZERO | RamFlags.PAGE, RamFlags.EOS | RamFlags.ZERO,
            RamFlags.MEM_SIZE | RamFlags.PAGE, 0x400, 0x800, RamFlags.MULTIFD_FLUSH | RamFlags.ZERO};
        for (int flags : bad) {
            says(rejectsPlain(Rule.RAM_FLAGS, withPart(new StreamBytes().part(RAM_ID).ramWord(0x3000, flags).counted(RAM)
                    .u8(0).eos().footer(RAM_ID))), String.format("unknown combination of migration flags 0x%x", flags));
        }
    }

    @Test
    @Rejects(Rule.RAM_UNSUPPORTED)
    void ramRecordKindsWeDoNotAccept() {
        for (int flags : new int[]{RamFlags.FULL, RamFlags.XBZRLE, RamFlags.HOOK, RamFlags.COMPRESS_PAGE,
            RamFlags.XBZRLE | RamFlags.CONTINUE}) {
            says(rejectsPlain(Rule.RAM_UNSUPPORTED, withPart(new StreamBytes().part(RAM_ID).ramWord(0x3000, flags)
                    .counted(RAM).u8(1).be16(0).eos().footer(RAM_ID))), String.format("RAM record flags 0x%x", flags));
        }
    }

    @Test
    @Rejects(Rule.RAM_CONTINUE)
    void ramContinueWithoutCurrentBlock() {
        says(rejectsPlain(Rule.RAM_CONTINUE, withPart(new StreamBytes().part(RAM_ID).zero(null, 0x3000).eos().footer(RAM_ID))),
                "CONTINUE page 0x3000 with no current RAMBlock");
        says(rejectsPlain(Rule.RAM_CONTINUE, withPart(new StreamBytes().part(RAM_ID).page(null, 0x1000, pattern(0x1000))
                .eos().footer(RAM_ID))), "CONTINUE page 0x1000");
    }

    @Test
    @Rejects(Rule.RAM_BLOCK)
    void ramUnknownBlock() {
        says(rejectsPlain(Rule.RAM_BLOCK, withPart(new StreamBytes().part(RAM_ID).zero("pc.ram", 0).eos().footer(RAM_ID))),
                "unknown RAMBlock 'pc.ram'");
        says(rejectsPlain(Rule.RAM_BLOCK, withPart(new StreamBytes().part(RAM_ID).page("rom", 0, pattern(0)).eos()
                .footer(RAM_ID))), "unknown RAMBlock 'rom'");
        says(rejectsPlain(Rule.RAM_BLOCK, withPart(new StreamBytes().part(RAM_ID).ramWord(0, RamFlags.ZERO).u8(0).u8(0)
                .eos().footer(RAM_ID))), "empty counted string");
    }

    @Test
    @Rejects(Rule.RAM_OFFSET)
    void ramOffsetOutsideTheBlock() {
        says(rejectsPlain(Rule.RAM_OFFSET, withPart(new StreamBytes().part(RAM_ID).page(RAM, RAM_LEN, pattern(0)).eos()
                .footer(RAM_ID))), "illegal RAM offset 0x100000 in block ram of 0x100000 bytes");
        says(rejectsPlain(Rule.RAM_OFFSET, withPart(new StreamBytes().part(RAM_ID).zero(RAM, 0).zero(null, 1L << 40).eos()
                .footer(RAM_ID))), "illegal RAM offset 0x10000000000");
        // offsets with the top bit set are negative as a Java long: they must not slip past the check
        for (long off : new long[]{0xfffffffffffff000L, 0x8000000000000000L}) {
            says(rejectsPlain(Rule.RAM_OFFSET, withPart(new StreamBytes().part(RAM_ID).zero(RAM, off).eos().footer(RAM_ID))),
                    String.format("illegal RAM offset 0x%x", off));
            says(rejectsPlain(Rule.RAM_OFFSET, withPart(new StreamBytes().part(RAM_ID).page(RAM, off, pattern(0)).eos()
                    .footer(RAM_ID))), String.format("illegal RAM offset 0x%x", off));
        }
    }

    @Test
    @Rejects(Rule.RAM_BEFORE_SETUP)
    void ramPageBeforeTheBlockList() {
        byte[] main = cat(prefix().start(RAM_ID, RAM, 0, 4).zero(RAM, 0).memSize(RAM_LEN).block(RAM, RAM_LEN).eos()
                .footer(RAM_ID).toBytes(), afterSetup());
        says(rejectsPlain(Rule.RAM_BEFORE_SETUP, main), "page record before the RAMBlock list");
    }

    @Test
    @Rejects(Rule.MEM_SIZE_TOTAL)
    void memSizeTotal() {
        says(rejectsPlain(Rule.MEM_SIZE_TOTAL, setupWith(new StreamBytes().memSize(0))), "announced RAM total of 0 bytes");
        says(rejectsPlain(Rule.MEM_SIZE_TOTAL, setupWith(new StreamBytes().memSize(RAM_LEN).block(RAM, 2 * RAM_LEN))),
                "block 'ram' of 2097152 bytes exceeds the 1048576 bytes left");
        says(rejectsPlain(Rule.MEM_SIZE_TOTAL, setupWith(new StreamBytes().memSize(2 * RAM_LEN).block(RAM, RAM_LEN)
                .block("rom", 2 * RAM_LEN))), "block 'rom' of 2097152 bytes exceeds the 1048576 bytes left");
        // a u64 total with the top bit set
        says(rejectsPlain(Rule.MEM_SIZE_TOTAL, setupWith(new StreamBytes().memSize(0x8000000000000000L).block(RAM, RAM_LEN))),
                "announced RAM total of 9223372036854775808 bytes");
    }

    @Test
    @Rejects(Rule.MEM_SIZE_BLOCK)
    void memSizeBadBlock() {
        says(rejectsPlain(Rule.MEM_SIZE_BLOCK, setupWith(new StreamBytes().memSize(RAM_LEN).u8(0).be64(RAM_LEN))),
                "empty counted string");
        for (long len : new long[]{0, 4095, RAM_LEN - 1, 0x8000000000000000L, -PAGE}) {
            says(rejectsPlain(Rule.MEM_SIZE_BLOCK, setupWith(new StreamBytes().memSize(RAM_LEN).block(RAM, len))),
                    "block 'ram' has length " + Long.toUnsignedString(len));
        }
        says(rejectsPlain(Rule.MEM_SIZE_BLOCK, setupWith(new StreamBytes().memSize(2 * RAM_LEN).block(RAM, RAM_LEN)
                .block(RAM, RAM_LEN))), "block 'ram' listed twice");
        // the list may not go on forever: 4097 one-page blocks
        StreamBytes many = new StreamBytes().memSize(4097L * PAGE);
        for (int i = 0; i < 4097; i++) {
            many.block("b" + i, PAGE);
        }
        says(rejectsPlain(Rule.MEM_SIZE_BLOCK, setupWith(many)), "more than 4096 blocks");
    }

    @Test
    @Rejects(Rule.MEM_SIZE_REPEATED)
    void memSizeRepeated() {
        says(rejectsPlain(Rule.MEM_SIZE_REPEATED, setupWith(new StreamBytes().memSize(RAM_LEN).block(RAM, RAM_LEN)
                .memSize(RAM_LEN).block(RAM, RAM_LEN))), "RAMBlock list outside the setup section or repeated");
        says(rejectsPlain(Rule.MEM_SIZE_REPEATED, withPart(new StreamBytes().part(RAM_ID).memSize(RAM_LEN).block(RAM, RAM_LEN)
                .eos().footer(RAM_ID))), "RAMBlock list outside the setup section or repeated");
    }

    @Test
    @Rejects(Rule.ZERO_FILL)
    void zeroRecordWithNonZeroFill() {
        for (int fill : new int[]{1, 0xff}) {
            says(rejectsPlain(Rule.ZERO_FILL, withPart(new StreamBytes().part(RAM_ID).zero(RAM, 0x3000, fill).eos()
                    .footer(RAM_ID))), String.format("ZERO record for 0x3000 with fill byte 0x%02x", fill));
        }
    }

    /** The plain stream whose setup section holds {@code memSize} (MEM_SIZE word and list) instead of the valid one. */
    static byte[] setupWith(StreamBytes memSize) {
        return cat(prefix().start(RAM_ID, RAM, 0, 4).toBytes(), memSize.toBytes(),
                new StreamBytes().eos().footer(RAM_ID).toBytes(), afterSetup());
    }

    // ------------------------------------------------------------------ §7.6 commands

    @Test
    @Rejects(Rule.COMMAND_UNKNOWN)
    void commandUnknown() {
        for (int id : new int[]{0, 12, 0x7fff, 0xffff}) {
            says(rejectsPlain(Rule.COMMAND_UNKNOWN, cat(prefix().command(id, new byte[0]).toBytes(), afterConfiguration())),
                    "unknown command " + id + " (length 0)");
        }
    }

    @Test
    @Rejects(Rule.COMMAND_LENGTH)
    void commandWithTheWrongLength() {
        Object[][] cases = {{Command.PING, 3}, {Command.PING, 5}, {Command.OPEN_RETURN_PATH, 1}, {Command.ENABLE_COLO, 4},
            {Command.SWITCHOVER_START, 2}, {Command.PACKAGED, 0}};
        for (Object[] c : cases) {
            Command cmd = (Command) c[0];
            int len = (int) c[1];
            says(rejectsPlain(Rule.COMMAND_LENGTH, cat(prefix().command(cmd.id, new byte[len]).toBytes(), afterConfiguration())),
                    "command " + cmd + " with length " + len + ", expected " + cmd.fixedLength);
        }
    }

    @Test
    @Rejects(Rule.COMMAND_UNSUPPORTED)
    void commandForPostcopy() {
        Object[][] cases = {{Command.POSTCOPY_ADVISE, 16}, {Command.POSTCOPY_LISTEN, 0}, {Command.POSTCOPY_RUN, 0},
            {Command.POSTCOPY_RAM_DISCARD, 9}, {Command.PACKAGED, 4}, {Command.POSTCOPY_RESUME, 0}, {Command.RECV_BITMAP, 5}};
        for (Object[] c : cases) {
            Command cmd = (Command) c[0];
            says(rejectsPlain(Rule.COMMAND_UNSUPPORTED, cat(prefix().command(cmd.id, new byte[(int) c[1]]).toBytes(),
                    afterConfiguration())), "command " + cmd + " (postcopy) is not supported");
        }
    }

    // ------------------------------------------------------------------ §7.7 device state and vmdesc

    @Test
    @Rejects(Rule.DEVICE_STATE_LIMIT)
    void deviceStateBeyondTheBound() {
        int bound = 64 << 10;
        StreamBytes dev = new StreamBytes().full(0, "timer", 0, 2).bytes(new byte[bound]).footer(0).eof()
                .vmdesc("{\"devices\": [{\"name\": \"timer\", \"instance_id\": 0, \"version\": 2}]}");
        ProtocolException e = rejects(Rule.DEVICE_STATE_LIMIT, PLAIN.withMainPart(3, dev.toBytes()).main(),
                SETUP.withLimits(64L << 20, bound, 16 << 20));
        says(e, "device state exceeds 65536 bytes without a valid end");
    }

    @Test
    @Rejects(Rule.DEVICE_STATE_END)
    void deviceStateWithoutAValidEnd() {
        byte[] dev = PLAIN.mainParts().get(3);
        byte[] vmdesc = new StreamBytes().eof().vmdesc(StreamBytes.VMDESC).toBytes();
        byte[] sections = Arrays.copyOf(dev, dev.length - vmdesc.length);
        // the stream stops inside the globalstate section, on a byte that is not 0
        int cut = sections.length - 5 - 90;
        sections[cut - 1] = 'x';
        says(rejectsPlain(Rule.DEVICE_STATE_END, PLAIN.withMainPart(3, Arrays.copyOf(sections, cut)).main()),
                "main channel closed after " + cut + " bytes of device state without EOF + VMDESCRIPTION");
        // ... and on a zero byte, which looks like the EOF of a source that sends no VMDESCRIPTION
        for (int at : new int[]{cut + 5, 19 + 24, 48 + 25 + 4 + 50}) {
            assertEquals(0, sections[at - 1]);
            says(rejectsPlain(Rule.DEVICE_STATE_END, PLAIN.withMainPart(3, Arrays.copyOf(sections, at)).main()),
                    "main channel closed after " + at + " bytes of device state");
        }
        // a VMDESCRIPTION naming devices the sections do not have never ends the device state
        byte[] wrongDesc = cat(sections, new StreamBytes().eof()
                .vmdesc("{\"devices\": [{\"name\": \"apic\", \"instance_id\": 0, \"version\": 3}]}").toBytes());
        says(rejectsPlain(Rule.DEVICE_STATE_END, PLAIN.withMainPart(3, wrongDesc).main()), "without EOF + VMDESCRIPTION");
        // a VMDESCRIPTION that is not JSON
        byte[] notJson = cat(sections, new StreamBytes().eof().vmdesc("{\"devices\": [}").toBytes());
        says(rejectsPlain(Rule.DEVICE_STATE_END, PLAIN.withMainPart(3, notJson).main()), "without EOF + VMDESCRIPTION");
    }

    @Test
    @Rejects(Rule.VMDESC_LIMIT)
    void vmdescriptionLongerThanTheBound() {
        List<byte[]> p = PLAIN.mainParts();
        byte[] ram = cat(p.get(0), p.get(1), p.get(2));   // no device sections: EOF follows the RAM END directly
        for (int len : new int[]{0x7fffffff, 0x80000000, 0xffffffff, (16 << 20) + 1}) {
            says(rejectsPlain(Rule.VMDESC_LIMIT, cat(ram, new StreamBytes().eof().u8(0x06).be32(len).bytes("{}".getBytes())
                    .toBytes())), "VMDESCRIPTION of " + Integer.toUnsignedString(len) + " bytes (bound 16777216)");
        }
        says(rejects(Rule.VMDESC_LIMIT, cat(ram, new StreamBytes().eof().vmdesc(StreamBytes.VMDESC).toBytes()),
                SETUP.withLimits(64L << 20, 64L << 20, 64)), "VMDESCRIPTION of " + StreamBytes.VMDESC.length() + " bytes (bound 64)");
    }

    // ------------------------------------------------------------------ §4 flush mode

    @Test
    @Rejects(Rule.SYNC_PROTOCOL)
    void flushModeMismatch() {
        Migration legacy = StreamBytes.multifd(2, FlushMode.LEGACY, Compression.NONE);
        says(rejects(Rule.SYNC_PROTOCOL, legacy.main(), legacy.channels(), Setup.of(legacy).withFlush(FlushMode.MODERN)),
                "the RAM setup section ended without MULTIFD_FLUSH");
        Migration modern = StreamBytes.multifd(2, FlushMode.MODERN, Compression.NONE);
        says(rejects(Rule.SYNC_PROTOCOL, modern.main(), modern.channels(), Setup.of(modern).withFlush(FlushMode.LEGACY)),
                "MULTIFD_FLUSH received but flush-mode is legacy");
        // AUTO decides legacy from the setup section; a MULTIFD_FLUSH later is then a broken pairing
        Migration mixed = legacy.withMainPart(MAIN_PART, new StreamBytes().part(RAM_ID).zero(RAM, 0).multifdFlush().eos()
                .footer(RAM_ID).toBytes());
        says(rejects(Rule.SYNC_PROTOCOL, mixed.main(), mixed.channels(), Setup.of(mixed).withFlush(FlushMode.AUTO)),
                "MULTIFD_FLUSH received but flush-mode is legacy");
    }

    // ------------------------------------------------------------------ end of the main channel

    @Test
    @Rejects(Rule.CHANNEL_TRUNCATED)
    void mainChannelClosedInsideARecord() {
        byte[] main = PLAIN.main();
        int part = PLAIN.mainParts().get(0).length;            // header, configuration, setup section
        int[] cuts = {4, 10, 14, 20, 24, part - 2, part + 3, part + 5 + 8 + 1 + 3 + 100};
        String[] states = {"header", "config_len", "config_name", "full_head", "full_name", "footer", "section_id",
            "page_data"};
        for (int i = 0; i < cuts.length; i++) {
            says(rejectsPlain(Rule.CHANNEL_TRUNCATED, Arrays.copyOf(main, cuts[i])), "main channel closed in state " + states[i]);
        }
        // inside the VMDESCRIPTION trailer of a stream without device sections
        List<byte[]> p = PLAIN.mainParts();
        byte[] noDevices = cat(p.get(0), p.get(1), p.get(2), new StreamBytes().eof().vmdesc(StreamBytes.VMDESC).toBytes());
        says(rejectsPlain(Rule.CHANNEL_TRUNCATED, Arrays.copyOf(noDevices, noDevices.length - 1)), "in state vmdesc_body");
        says(rejectsPlain(Rule.CHANNEL_TRUNCATED, Arrays.copyOf(noDevices, noDevices.length - StreamBytes.VMDESC.length() - 2)),
                "in state vmdesc_len");
    }

    @Test
    @Rejects(Rule.CHANNEL_CLOSED)
    void mainChannelClosedBetweenRecords() {
        List<byte[]> p = PLAIN.mainParts();
        says(rejectsPlain(Rule.CHANNEL_CLOSED, p.get(0)), "main channel closed", "before the migration finished");
        says(rejectsPlain(Rule.CHANNEL_CLOSED, cat(p.get(0), p.get(1))), "before the migration finished");
        says(rejectsPlain(Rule.CHANNEL_CLOSED, prefix().toBytes()), "before the migration finished");
    }
}
