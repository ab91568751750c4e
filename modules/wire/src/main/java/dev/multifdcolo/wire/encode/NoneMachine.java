package dev.multifdcolo.wire.encode;

import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * The non-RAM state of a QEMU {@code -M none} machine without a CPU (PROTOCOL.md §7.8,
 * QEMU-11.1-NOTES §6): the {@code timer} (v2, 24 bytes) and {@code globalstate} (v1, be32 size +
 * 100 bytes) FULL sections and the matching vmdesc JSON, in the shape QEMU 7.2 or 11.1 produces.
 *
 * <p>Section ids are the source's choice and the destination does not care; the defaults are the
 * ones the captured QEMU used so that our streams can be compared byte for byte.
 *
 * @param flavor          which QEMU's layout and ids to imitate
 * @param runState        the run-state name carried by {@code globalstate} ("prelaunch",
 *                        "running", "paused", ...); a destination started with {@code -S}
 *                        switches to it after the load
 * @param cpuTicksOffset  timer field 1
 * @param cpuClockOffset  timer field 3
 */
public record NoneMachine(Flavor flavor, String runState, long cpuTicksOffset, long cpuClockOffset) {

    /** Which QEMU the device sections imitate. */
    public enum Flavor {
        /** 7.2: ram id 2, timer 0, globalstate 4; vmdesc lists the 100-byte runstate buffer. */
        QEMU_7_2(2, 0, 4),
        /** 11.1: ram id 1, timer 0, globalstate 3; runstate is 32 bytes + has_vm_was_suspended(1)
         *  + vm_was_suspended(0) + 66 unused; vmdesc starts with a "configuration" entry. */
        QEMU_11_1(1, 0, 3);

        public final int ramSectionId;
        public final int timerSectionId;
        public final int globalstateSectionId;

        Flavor(int ram, int timer, int globalstate) {
            this.ramSectionId = ram;
            this.timerSectionId = timer;
            this.globalstateSectionId = globalstate;
        }
    }

    public static final String TIMER = "timer";
    public static final int TIMER_VERSION = 2;
    public static final String GLOBALSTATE = "globalstate";
    public static final int GLOBALSTATE_VERSION = 1;
    /** globalstate's runstate area: 100 bytes on the wire in both versions. */
    public static final int RUNSTATE_AREA = 100;

    public NoneMachine {
        if (flavor == null || runState == null || runState.isEmpty()) {
            throw new IllegalArgumentException("flavor and run state are required");
        }
        int max = flavor == Flavor.QEMU_11_1 ? 31 : RUNSTATE_AREA - 1;
        if (runState.getBytes(StandardCharsets.US_ASCII).length > max) {
            throw new IllegalArgumentException("run state name longer than " + max + " bytes");
        }
    }

    /** "prelaunch" with zero timer offsets, as a paused 11.1 source sends it. */
    public static NoneMachine of(Flavor flavor) {
        return new NoneMachine(flavor, "prelaunch", 0, 0);
    }

    public int ramSectionId() {
        return flavor.ramSectionId;
    }

    /** Writes FULL {@code timer} and FULL {@code globalstate} (with footers). */
    public void writeDeviceSections(StreamWriter w) throws IOException {
        int timer = flavor.timerSectionId;
        w.sectionFull(timer, TIMER, 0, TIMER_VERSION)
                .be64(cpuTicksOffset).be64(0).be64(cpuClockOffset)
                .footer(timer);
        int gs = flavor.globalstateSectionId;
        byte[] name = runState.getBytes(StandardCharsets.US_ASCII);
        byte[] area = new byte[RUNSTATE_AREA];
        System.arraycopy(name, 0, area, 0, name.length);
        if (flavor == Flavor.QEMU_11_1) {
            area[32] = 1; // has_vm_was_suspended = true, vm_was_suspended (byte 33) = false
        }
        w.sectionFull(gs, GLOBALSTATE, 0, GLOBALSTATE_VERSION)
                .be32(name.length + 1).bytes(area)
                .footer(gs);
    }

    /** The VMDESCRIPTION JSON QEMU writes for this machine (same text and spacing). */
    public String vmdescJson(String machine) {
        StringBuilder sb = new StringBuilder(1024).append('{');
        if (flavor == Flavor.QEMU_11_1) {
            sb.append("\"configuration\": {\"vmsd_name\": \"configuration\", \"version\": 1, \"fields\": [")
                    .append(field("len", "uint32", 4)).append(", ")
                    .append(field("name", "buffer", machine.getBytes(StandardCharsets.ISO_8859_1).length))
                    .append("]}, ");
        }
        sb.append("\"page_size\": 4096, \"devices\": [");
        sb.append(device(TIMER, TIMER_VERSION,
                field("cpu_ticks_offset", "int64", 8),
                field("unused", "unused_buffer", 8),
                field("cpu_clock_offset", "int64", 8)));
        sb.append(", ");
        if (flavor == Flavor.QEMU_11_1) {
            sb.append(device(GLOBALSTATE, GLOBALSTATE_VERSION,
                    field("size", "uint32", 4),
                    field("runstate", "buffer", 32),
                    field("has_vm_was_suspended", "uint8", 1),
                    field("vm_was_suspended", "uint8", 1),
                    field("unused", "buffer", 66)));
        } else {
            sb.append(device(GLOBALSTATE, GLOBALSTATE_VERSION,
                    field("size", "uint32", 4),
                    field("runstate", "buffer", RUNSTATE_AREA)));
        }
        return sb.append("]}").toString();
    }

    private static String device(String name, int version, String... fields) {
        return "{\"name\": \"" + name + "\", \"instance_id\": 0, \"vmsd_name\": \"" + name
                + "\", \"version\": " + version + ", \"fields\": [" + String.join(", ", fields) + "]}";
    }

    private static String field(String name, String type, int size) {
        return "{\"name\": \"" + name + "\", \"type\": \"" + type + "\", \"size\": " + size + "}";
    }
}
