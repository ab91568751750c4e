package dev.multifdcolo.qemu.guest;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.OptionalDouble;
import java.util.function.Function;

/**
 * A tiny real x86 guest that dirties RAM at a controlled rate: the flat 64 KiB {@code -bios}
 * image built from {@code src/guest/dirty.S}, with its parameters patched in.
 *
 * <p>It dirties {@link #burst()} consecutive pages of a region per burst (a 16-byte
 * {@link PageRecord} at the start of each page), wrapping around, then paces itself, and after
 * {@link #maxPasses()} full passes (0 = forever) marks itself done and halts. Progress is in a
 * {@link Status} block at guest-physical 0x7000, read with HMP
 * {@code xp}. Layouts: {@code src/guest/README.md}.
 *
 * <pre>{@code
 * DirtyGuest guest = DirtyGuest.heavy();                 // ~16,000 pages per 600 ms
 * Path bios = guest.writeTo(workDir.resolve("dirty.bin"));
 * try (Qemu vm = Qemu.builder(QemuBinaries.assume111()).args(DirtyGuest.qemuArgs(bios, 160)).start()) {
 *     DirtyGuest.Status s = DirtyGuest.status(vm.qmp()::hmp);
 * }
 * }</pre>
 *
 * <p>Instances are immutable; the {@code with*} methods return patched copies.
 */
public final class DirtyGuest {

    /** Image size: exactly 64 KiB. */
    public static final int IMAGE_SIZE = 0x1_0000;
    /** Guest page size; one record per page. */
    public static final int PAGE_SIZE = 4096;
    /** Image offset of the parameter block (16 little-endian words, of which 8 are used). */
    public static final int PARAMS_OFFSET = 0x0000;
    /** Guest-physical address of the parameter block (high alias; also at 0xF0000). */
    public static final long PARAMS_ADDRESS = 0xFFFF_0000L + PARAMS_OFFSET;
    /** Guest-physical address of the status block. */
    public static final long STATUS_ADDRESS = 0x7000;
    static final String STATUS_ADDRESS_HEX = "0x7000";
    /** Public 32-bit words in the status block (0x7000..0x704F). */
    public static final int STATUS_WORDS = 20;
    /** Parameter and status layout version (parameter word 1, status word 15). */
    public static final int LAYOUT_VERSION = 1;

    /** "DPRM": parameter block magic (as a little-endian word). */
    public static final int MAGIC_PARAMS = 0x4D52_5044;
    /** "DRUN": status magic while dirtying. */
    public static final int MAGIC_RUNNING = 0x4E55_5244;
    /** "DONE": status magic after max_passes. */
    public static final int MAGIC_DONE = 0x454E_4F44;
    /** "FAIL": status magic after an unexpected CPU exception (the guest halts). */
    public static final int MAGIC_FAIL = 0x4C49_4146;
    /** "DRTY": magic in the last word of every page record. */
    public static final int MAGIC_RECORD = 0x5954_5244;

    /** Parameter word offsets inside the image. */
    public static final int P_MAGIC = 0x00, P_VERSION = 0x04, P_BURST = 0x08, P_DELAY = 0x0C,
            P_REGION_START = 0x10, P_REGION_PAGES = 0x14, P_MAX_PASSES = 0x18, P_FLAGS = 0x1C;
    /** Flags bit 0: {@code delay} is the burst period in microseconds, on a TSC schedule. */
    public static final int FLAG_PACE_US = 1;
    /** Flags bit 1 (with bit 0): wait in {@code hlt} for a local APIC timer instead of spinning. */
    public static final int FLAG_HALT = 2;

    /** Default region: 64 MiB .. 128 MiB (16384 pages). */
    public static final long DEFAULT_REGION_START = 64L << 20, DEFAULT_REGION_SIZE = 64L << 20;
    /** Burst period of the presets: 1.2 ms. */
    public static final int DEFAULT_PERIOD_MICROS = 1200;
    /** Pages per burst: {@link #light()} (4 per 1.2 ms = 2,000 per 600 ms). */
    public static final int LIGHT_BURST = 4;
    /** Pages per burst: {@link #heavy()} (32 per 1.2 ms = 16,000 per 600 ms). */
    public static final int HEAVY_BURST = 32;
    /**
     * Busy-loop iterations per millisecond, measured under TCG (QEMU 11.1, idle 2-core host):
     * about 630,000, but 10-15 % lower between runs and down to ~45 % on a loaded host. Only a
     * starting point for {@link #withDelay}; prefer {@link #withPeriodMicros}.
     */
    public static final int BUSY_LOOP_ITERATIONS_PER_MS = 630_000;

    /** Highest region end accepted (the {@code -M pc} PCI hole starts at 3.5 GiB at most). */
    public static final long MAX_REGION_END = 0xE000_0000L;
    /** Lowest region start accepted (above real-mode memory, the status block and the BIOS alias). */
    public static final long MIN_REGION_START = 0x10_0000L;
    /** Longest burst period accepted by {@link #withPeriodMicros} (keeps TSC ticks in 32 bits). */
    public static final long MAX_PERIOD_MICROS = 1_000_000;

    /** How the guest waits between bursts. */
    public enum Pacing {
        /**
         * {@code delay} busy-loop iterations after each burst (flags 0). No interrupts; the rate
         * depends on TCG speed and host load, and the vCPU keeps a host core busy.
         */
        BUSY_LOOP(0),
        /**
         * A burst every {@code delay} microseconds on a TSC schedule (TSC calibrated against the PIT
         * at boot), spinning on RDTSC in between (flags 1). No interrupts; keeps a host core busy.
         */
        SPIN(FLAG_PACE_US),
        /**
         * The same schedule, but waiting in {@code hlt} for a one-shot local APIC timer (flags 3):
         * QEMU is idle between bursts (about 5 % of a host core). The presets use this.
         */
        HALT(FLAG_PACE_US | FLAG_HALT);

        private final int flags;

        Pacing(int flags) {
            this.flags = flags;
        }

        /** The parameter block's flags word for this pacing. */
        public int flags() {
            return flags;
        }

        static Pacing of(int flags) {
            if ((flags & FLAG_PACE_US) == 0) {
                return BUSY_LOOP;
            }
            return (flags & FLAG_HALT) != 0 ? HALT : SPIN;
        }

        /** True for the modes where {@code delay} is a period in microseconds. */
        public boolean timed() {
            return this != BUSY_LOOP;
        }
    }

    private final byte[] image;
    private final String origin;

    private DirtyGuest(byte[] image, String origin) {
        this.image = image;
        this.origin = origin;
    }

    // ---------------------------------------------------------------- factories

    /** The image as assembled (its defaults are {@link #light()}'s), built or prebuilt: see {@link GuestImages}. */
    public static DirtyGuest load() {
        GuestImages.Image base = GuestImages.image();
        return fromImage(base.bytes(), base.origin());
    }

    /** About 2,000 pages dirtied per 600 ms: 4 pages every 1.2 ms ({@link Pacing#HALT}), over 64..128 MiB. */
    public static DirtyGuest light() {
        return load().withBurst(LIGHT_BURST).withPeriodMicros(DEFAULT_PERIOD_MICROS)
                .withRegion(DEFAULT_REGION_START, DEFAULT_REGION_SIZE).withMaxPasses(0);
    }

    /** About 16,000 pages dirtied per 600 ms (nearly the whole 64 MiB region): 32 pages every 1.2 ms ({@link Pacing#HALT}). */
    public static DirtyGuest heavy() {
        return light().withBurst(HEAVY_BURST);
    }

    /** An image from bytes (validated: 64 KiB, parameter magic and version). */
    public static DirtyGuest fromImage(byte[] image) {
        return fromImage(image.clone(), "bytes");
    }

    /** An image from a file. */
    public static DirtyGuest fromFile(Path file) throws IOException {
        return fromImage(Files.readAllBytes(file), file.toString());
    }

    private static DirtyGuest fromImage(byte[] image, String origin) {
        if (image.length != IMAGE_SIZE) {
            throw new IllegalArgumentException("image is " + image.length + " bytes, expected " + IMAGE_SIZE);
        }
        int magic = word(image, P_MAGIC);
        int version = word(image, P_VERSION);
        if (magic != MAGIC_PARAMS || version != LAYOUT_VERSION) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "not a dirty guest image v%d: parameter magic 0x%08x, version %d", LAYOUT_VERSION, magic, version));
        }
        return new DirtyGuest(image, origin);
    }

    // ---------------------------------------------------------------- patching

    /** Pages dirtied per burst, at least 1. */
    public DirtyGuest withBurst(int pages) {
        if (pages < 1) {
            throw new IllegalArgumentException("burst must be >= 1, got " + pages);
        }
        return patch(P_BURST, pages);
    }

    /** {@link Pacing#BUSY_LOOP}: {@code iterations} (unsigned 32 bit, 0 = none) after each burst. */
    public DirtyGuest withDelay(long iterations) {
        if (iterations < 0 || iterations > 0xFFFF_FFFFL) {
            throw new IllegalArgumentException("delay must fit in 32 unsigned bits, got " + iterations);
        }
        return patch(P_DELAY, (int) iterations).patch(P_FLAGS, Pacing.BUSY_LOOP.flags());
    }

    /**
     * A burst every {@code micros} microseconds (0 = no pacing, flat out; at most 1 s), keeping a
     * timed pacing ({@link Pacing#SPIN} or {@link Pacing#HALT}) or else switching to {@link Pacing#HALT}.
     */
    public DirtyGuest withPeriodMicros(long micros) {
        return withPeriodMicros(micros, pacing().timed() ? pacing() : Pacing.HALT);
    }

    /** A burst every {@code micros} microseconds, waiting as {@code pacing} says ({@link Pacing#SPIN} or {@link Pacing#HALT}). */
    public DirtyGuest withPeriodMicros(long micros, Pacing pacing) {
        if (micros < 0 || micros > MAX_PERIOD_MICROS) {
            throw new IllegalArgumentException("period must be 0.." + MAX_PERIOD_MICROS + " us, got " + micros);
        }
        if (!pacing.timed()) {
            throw new IllegalArgumentException(pacing + " has no period; use withDelay(iterations)");
        }
        return patch(P_DELAY, (int) micros).patch(P_FLAGS, pacing.flags());
    }

    /** The region walked: page-aligned, within [1 MiB, 3.5 GiB). */
    public DirtyGuest withRegion(long startBytes, long sizeBytes) {
        if (startBytes % PAGE_SIZE != 0 || sizeBytes % PAGE_SIZE != 0 || sizeBytes <= 0) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "region start 0x%x and size 0x%x must be page aligned, size > 0", startBytes, sizeBytes));
        }
        if (startBytes < MIN_REGION_START || startBytes + sizeBytes > MAX_REGION_END) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "region 0x%x+0x%x outside [0x%x, 0x%x)", startBytes, sizeBytes, MIN_REGION_START, MAX_REGION_END));
        }
        return patch(P_REGION_START, (int) startBytes).patch(P_REGION_PAGES, (int) (sizeBytes / PAGE_SIZE));
    }

    /** Full passes over the region after which the guest writes DONE and halts; 0 = forever. */
    public DirtyGuest withMaxPasses(int passes) {
        if (passes < 0) {
            throw new IllegalArgumentException("max passes must be >= 0, got " + passes);
        }
        return patch(P_MAX_PASSES, passes);
    }

    private DirtyGuest patch(int offset, int value) {
        byte[] copy = image.clone();
        ByteBuffer.wrap(copy).order(ByteOrder.LITTLE_ENDIAN).putInt(offset, value);
        return new DirtyGuest(copy, origin);
    }

    // ---------------------------------------------------------------- parameters

    public int burst() {
        return word(image, P_BURST);
    }

    /** Busy-loop iterations or period in microseconds, depending on {@link #pacing()} (unsigned). */
    public long delay() {
        return Integer.toUnsignedLong(word(image, P_DELAY));
    }

    public Pacing pacing() {
        return Pacing.of(flagsWord());
    }

    public long regionStart() {
        return Integer.toUnsignedLong(word(image, P_REGION_START));
    }

    public long regionPages() {
        return Integer.toUnsignedLong(word(image, P_REGION_PAGES));
    }

    public long regionSize() {
        return regionPages() * PAGE_SIZE;
    }

    public long regionEnd() {
        return regionStart() + regionSize();
    }

    public int maxPasses() {
        return word(image, P_MAX_PASSES);
    }

    private int flagsWord() {
        return word(image, P_FLAGS);
    }

    /** Guest-physical address of page {@code index} of the region. */
    public long pageAddress(long index) {
        if (index < 0 || index >= regionPages()) {
            throw new IndexOutOfBoundsException("page " + index + " of " + regionPages());
        }
        return regionStart() + index * PAGE_SIZE;
    }

    /** With timed pacing: {@code burst * 1e6 / period} pages per second; empty for busy-loop pacing or period 0. */
    public OptionalDouble nominalPagesPerSecond() {
        if (!pacing().timed() || delay() == 0) {
            return OptionalDouble.empty();
        }
        return OptionalDouble.of(burst() * 1e6 / delay());
    }

    /** The smallest {@code -m} (MiB) that holds the region. */
    public long minimumRamMiB() {
        return (regionEnd() + (1 << 20) - 1) >> 20;
    }

    /** Where the unpatched image came from (built, prebuilt, explicit file). */
    public String origin() {
        return origin;
    }

    // ---------------------------------------------------------------- image

    /** A copy of the patched 64 KiB image. */
    public byte[] image() {
        return image.clone();
    }

    /** Writes the patched image to {@code file} (atomically replacing it) and returns {@code file}. */
    public Path writeTo(Path file) throws IOException {
        Path dir = file.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, file.getFileName().toString(), ".tmp");
        try {
            Files.write(tmp, image);
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
        return file;
    }

    /**
     * QEMU arguments for this guest (without the QMP socket): {@code -M pc -accel tcg -m <ramMiB>M
     * -bios <image> -vga none -nodefaults -display none}.
     */
    public static List<String> qemuArgs(Path image, long ramMiB) {
        return new ArrayList<>(List.of("-M", "pc", "-accel", "tcg", "-m", ramMiB + "M",
                "-bios", image.toAbsolutePath().toString(), "-vga", "none", "-nodefaults", "-display", "none"));
    }

    // ---------------------------------------------------------------- reading progress

    /** The HMP command that dumps the status block: {@code xp /20wx 0x7000}. */
    public static String statusCommand() {
        return "xp /" + STATUS_WORDS + "wx " + STATUS_ADDRESS_HEX;
    }

    /** Parses the output of {@link #statusCommand()}. */
    public static Status status(String xpOutput) {
        return Status.parse(xpOutput);
    }

    /** Runs {@link #statusCommand()} through {@code hmp} (e.g. {@code qmp::hmp}) and parses it. */
    public static Status status(Function<String, String> hmp) {
        return Status.parse(hmp.apply(statusCommand()));
    }

    /** The record in page {@code index} of this guest's region, read through {@code hmp}. */
    public PageRecord record(Function<String, String> hmp, long index) {
        return PageRecord.read(hmp, pageAddress(index));
    }

    /**
     * The 32-bit words of an HMP {@code xp /Nwx} (or {@code /Nwd}, {@code /Nwu}) output, in address order:
     * lines like {@code 0000000000007000: 0x4e555244 0x00000b0d 0x00002c34 0x00000000}.
     */
    public static int[] parseWords(String xpOutput) {
        Objects.requireNonNull(xpOutput, "xpOutput");
        List<Integer> words = new ArrayList<>();
        for (String line : xpOutput.split("\\R")) {
            line = line.strip();
            if (line.isEmpty()) {
                continue;
            }
            int colon = line.indexOf(':');
            if (colon < 0) {
                throw new IllegalArgumentException("not xp output (no address): " + line);
            }
            for (String token : line.substring(colon + 1).trim().split("\\s+")) {
                if (token.isEmpty()) {
                    continue;
                }
                try {
                    long value = token.startsWith("0x") || token.startsWith("0X")
                            ? Long.parseLong(token.substring(2), 16) : Long.parseLong(token);
                    words.add((int) value);
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("not xp output (bad word '" + token + "'): " + line, e);
                }
            }
        }
        return words.stream().mapToInt(Integer::intValue).toArray();
    }

    static int word(byte[] bytes, int offset) {
        return ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getInt(offset);
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "DirtyGuest[burst=%d, %s=%d, region=0x%x+0x%x (%d pages), maxPasses=%d]",
                burst(), pacing().timed() ? pacing() + " periodUs" : "delayIterations", delay(),
                regionStart(), regionSize(), regionPages(), maxPasses());
    }

    // ---------------------------------------------------------------- records

    /**
     * The status block at 0x7000 (all words little-endian, counters unsigned 32 bit). Before the
     * guest has initialised it, everything is 0 and {@link #started()} is false.
     *
     * @param magic              {@link #MAGIC_RUNNING}, {@link #MAGIC_DONE}, {@link #MAGIC_FAIL}, or 0 before start
     * @param generation         bursts started; each record carries its burst's generation
     * @param pagesWritten       records written in total (the progress counter), updated after each burst
     * @param passes             full passes over the region completed
     * @param done               max_passes reached; the guest has halted ({@code cli; hlt})
     * @param cursor             region page index that will be written next
     * @param burst              effective parameters, as the guest uses them
     * @param flags              effective flags (HALT is dropped if the APIC timer did not count)
     * @param tscTicksPerMs      calibrated TSC rate (timed pacing only, else 0)
     * @param periodTicks        burst period in TSC ticks (timed pacing only, else 0)
     * @param lateResets         times the vCPU fell more than 256 periods behind and the schedule restarted
     * @param version            layout version
     * @param apicCountsPerMs    calibrated local APIC timer rate ({@link Pacing#HALT} only, else 0)
     * @param timerInterrupts    APIC timer interrupts taken ({@link Pacing#HALT} only)
     * @param calibrationRounds  10 ms PIT rounds the calibration needed (1..20; more on a busy host)
     * @param calibrationErrorTicks uncertainty of the chosen round's window, in TSC ticks (window ~10 ms)
     */
    public record Status(int magic, long generation, long pagesWritten, long passes, boolean done, long cursor,
                         long burst, long delay, long regionStart, long regionPages, long maxPasses, int flags,
                         long tscTicksPerMs, long periodTicks, long lateResets, int version,
                         long apicCountsPerMs, long timerInterrupts, long calibrationRounds,
                         long calibrationErrorTicks) {

        /** Parses {@code xp /20wx 0x7000} output (fewer words are accepted, at least the first 5). */
        public static Status parse(String xpOutput) {
            return fromWords(parseWords(xpOutput));
        }

        /** From the status words (missing trailing words are 0). */
        public static Status fromWords(int[] words) {
            if (words.length < 5) {
                throw new IllegalArgumentException("status needs at least 5 words, got " + words.length);
            }
            int[] w = java.util.Arrays.copyOf(words, STATUS_WORDS);
            return new Status(w[0], u(w[1]), u(w[2]), u(w[3]), w[4] != 0, u(w[5]), u(w[6]), u(w[7]), u(w[8]),
                    u(w[9]), u(w[10]), w[11], u(w[12]), u(w[13]), u(w[14]), w[15],
                    u(w[16]), u(w[17]), u(w[18]), u(w[19]));
        }

        /** The guest has reached protected mode and initialised the block. */
        public boolean started() {
            return magic == MAGIC_RUNNING || magic == MAGIC_DONE || magic == MAGIC_FAIL;
        }

        /** Dirtying (started, not done, no failure). */
        public boolean running() {
            return magic == MAGIC_RUNNING && !done;
        }

        /** The guest took an unexpected CPU exception and halted. */
        public boolean failed() {
            return magic == MAGIC_FAIL;
        }

        public Pacing pacing() {
            return Pacing.of(flags);
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT,
                    "Status[%s gen=%d pages=%d passes=%d done=%b cursor=%d burst=%d delay=%d region=0x%x+%dp "
                            + "maxPasses=%d %s tsc/ms=%d period=%d late=%d apic/ms=%d irqs=%d cal=%d/%d v%d]",
                    magicName(magic), generation, pagesWritten, passes, done, cursor, burst, delay, regionStart,
                    regionPages, maxPasses, pacing(), tscTicksPerMs, periodTicks, lateResets, apicCountsPerMs,
                    timerInterrupts, calibrationRounds, calibrationErrorTicks, version);
        }
    }

    /**
     * The 16-byte record at the start of a dirtied page.
     *
     * @param generation the burst that wrote it
     * @param pageIndex  the page's index in the region
     * @param progress   the progress counter: this is the {@code progress}-th record written since boot,
     *                   so {@code (progress - 1) % regionPages == pageIndex}
     * @param magic      {@link #MAGIC_RECORD} once written, 0 for a page never written
     */
    public record PageRecord(long generation, long pageIndex, long progress, int magic) {

        /** Reads the record at guest-physical {@code address} with {@code xp /4wx}. */
        public static PageRecord read(Function<String, String> hmp, long address) {
            return parse(hmp.apply(String.format(Locale.ROOT, "xp /4wx 0x%x", address)));
        }

        /** Parses {@code xp /4wx ADDR} output. */
        public static PageRecord parse(String xpOutput) {
            int[] w = parseWords(xpOutput);
            if (w.length < 4) {
                throw new IllegalArgumentException("page record needs 4 words, got " + w.length);
            }
            return new PageRecord(u(w[0]), u(w[1]), u(w[2]), w[3]);
        }

        /** The page has been written by the guest. */
        public boolean written() {
            return magic == MAGIC_RECORD;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "PageRecord[%s gen=%d page=%d progress=%d]",
                    magicName(magic), generation, pageIndex, progress);
        }
    }

    private static long u(int word) {
        return Integer.toUnsignedLong(word);
    }

    /** The four ASCII characters of a little-endian magic word, or its hex value. */
    static String magicName(int word) {
        StringBuilder sb = new StringBuilder(4);
        for (int i = 0; i < 4; i++) {
            int c = (word >>> (8 * i)) & 0xff;
            if (c < 0x20 || c > 0x7e) {
                return String.format(Locale.ROOT, "0x%08x", word);
            }
            sb.append((char) c);
        }
        return sb.toString();
    }
}
