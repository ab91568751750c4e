package dev.multifdcolo.primary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.MemoryLimitException;
import dev.multifdcolo.memory.Pages;
import dev.multifdcolo.memory.RamBlock;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.IntStream;

/**
 * Guest images to send: raw files (one per RAMBlock) or a seeded generator of mixed pages.
 *
 * <p>The generator is deterministic per (seed, page index), whatever the thread count: each page
 * is zero with probability {@code zeroRatio}; the others are random bytes (incompressible),
 * text-like (a window of a seeded word corpus, compressible) or sparse (zero except for a few
 * bytes, which catches zero detectors that look only at part of a page). It fills about a GiB
 * per second per core.
 */
public final class GuestImages {
    private GuestImages() {}

    /** QEMU's RAMBlock name for {@code -M none -m SIZE}. */
    public static final String DEFAULT_BLOCK = "ram";

    private static final int CORPUS_SIZE = 256 * 1024;
    private static final String[] WORDS = {
        "the", "migration", "stream", "page", "block", "guest", "memory", "channel", "packet", "sync",
        "qemu", "colo", "checkpoint", "primary", "secondary", "dirty", "bitmap", "zero", "section", "device",
        "state", "kernel", "process", "thread", "socket", "buffer", "queue", "table", "index", "value",
        "of", "and", "to", "in", "is", "for", "on", "with", "as", "by", "at", "from", "that", "this",
        "error", "warning", "info", "debug", "return", "struct", "int", "long", "void", "static",
        "const", "unsigned", "while", "if", "else", "0x1000", "4096", "lorem", "ipsum", "dolor",
    };

    /** Allocates one block of {@code size} bytes named {@link #DEFAULT_BLOCK} and fills it. */
    public static GuestMemory generate(long size, long seed, double zeroRatio) throws MemoryLimitException {
        return generate(DEFAULT_BLOCK, size, seed, zeroRatio);
    }

    public static GuestMemory generate(String block, long size, long seed, double zeroRatio)
            throws MemoryLimitException {
        GuestMemory mem = GuestMemory.allocate(List.of(new BlockSpec(block, size)), size, Backing.anonymous());
        fill(mem.blocks().get(0), seed, zeroRatio);
        return mem;
    }

    /** Rewrites every page of {@code block} from (seed, page index). */
    public static void fill(RamBlock block, long seed, double zeroRatio) {
        if (zeroRatio < 0 || zeroRatio > 1) {
            throw new IllegalArgumentException("zero ratio must be within 0..1");
        }
        byte[] corpus = corpus(seed);
        MemorySegment corpusSeg = MemorySegment.ofArray(corpus);
        MemorySegment image = block.guest();
        long pages = block.pages();
        int chunk = 256;
        int chunks = (int) ((pages + chunk - 1) / chunk);
        IntStream.range(0, chunks).parallel().forEach(c -> {
            long from = (long) c * chunk;
            long to = Math.min(pages, from + chunk);
            for (long p = from; p < to; p++) {
                fillPage(image, p, seed, zeroRatio, corpusSeg);
            }
        });
    }

    /** Rewrites the pages of {@code dirty} (e.g. between iterations), with a different seed. */
    public static void fillPages(RamBlock block, DirtyPages dirty, long seed, double zeroRatio) {
        java.util.BitSet bits = dirty.pagesOf(block);
        if (bits == null) {
            return;
        }
        MemorySegment corpusSeg = MemorySegment.ofArray(corpus(seed));
        for (int p = bits.nextSetBit(0); p >= 0; p = bits.nextSetBit(p + 1)) {
            fillPage(block.guest(), p, seed, zeroRatio, corpusSeg);
        }
    }

    private static void fillPage(MemorySegment image, long page, long seed, double zeroRatio, MemorySegment corpus) {
        long off = page << Pages.SHIFT;
        long h = mix(seed ^ mix(page + 0x9E3779B97F4A7C15L));
        double u = (h >>> 11) * 0x1.0p-53;
        if (u < zeroRatio) {
            image.asSlice(off, Pages.SIZE).fill((byte) 0);
            return;
        }
        int kind = (int) ((h >>> 3) & 0xff);
        if (kind < 115) {            // ~45 %: random
            long s = h;
            for (int i = 0; i < Pages.SIZE; i += 8) {
                s += 0x9E3779B97F4A7C15L;
                image.set(ValueLayout.JAVA_LONG_UNALIGNED, off + i, mix(s));
            }
        } else if (kind < 230) {     // ~45 %: text-like
            long src = Long.remainderUnsigned(mix(h), CORPUS_SIZE - Pages.SIZE);
            MemorySegment.copy(corpus, src, image, off, Pages.SIZE);
        } else {                     // ~10 %: sparse, the non-zero bytes at the page's far end
            image.asSlice(off, Pages.SIZE).fill((byte) 0);
            image.set(ValueLayout.JAVA_LONG_UNALIGNED, off + Pages.SIZE - 8, h | 1);
        }
    }

    private static byte[] corpus(long seed) {
        byte[] c = new byte[CORPUS_SIZE];
        long s = seed;
        int i = 0;
        while (i < c.length) {
            s += 0x9E3779B97F4A7C15L;
            long r = mix(s);
            byte[] w = WORDS[(int) Long.remainderUnsigned(r, WORDS.length)].getBytes(StandardCharsets.US_ASCII);
            for (int k = 0; k < w.length && i < c.length; k++) {
                c[i++] = w[k];
            }
            if (i < c.length) {
                c[i++] = (byte) (((r >>> 40) & 15) == 0 ? '\n' : ' ');
            }
        }
        return c;
    }

    /** SplitMix64 finaliser. */
    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /**
     * Loads raw files, one per block (name → file). A block is {@code blockSize} bytes when that is
     * positive (the file must fit; the rest stays zero), else the file size rounded up to a page.
     */
    public static GuestMemory load(Map<String, Path> files, long blockSize) throws IOException, MemoryLimitException {
        List<BlockSpec> specs = new ArrayList<>();
        Map<String, Long> sizes = new LinkedHashMap<>();
        long total = 0;
        for (Map.Entry<String, Path> e : files.entrySet()) {
            long fileSize = java.nio.file.Files.size(e.getValue());
            long len = blockSize > 0 ? blockSize : Math.max(Pages.SIZE, (fileSize + Pages.SIZE - 1) & -Pages.SIZE);
            if (fileSize > len) {
                throw new IOException(e.getValue() + " (" + fileSize + " bytes) does not fit block " + e.getKey()
                        + " of " + len + " bytes");
            }
            specs.add(new BlockSpec(e.getKey(), len));
            sizes.put(e.getKey(), fileSize);
            total += len;
        }
        GuestMemory mem = GuestMemory.allocate(specs, total, Backing.anonymous());
        try {
            for (Map.Entry<String, Path> e : files.entrySet()) {
                RamBlock b = mem.block(e.getKey());
                readInto(e.getValue(), b.guest().asSlice(0, sizes.get(e.getKey())));
            }
        } catch (IOException | RuntimeException e) {
            mem.close();
            throw e;
        }
        return mem;
    }

    /** Copies {@code file} into {@code target} (which is exactly the file's size). */
    public static void readInto(Path file, MemorySegment target) throws IOException {
        try (FileChannel fc = FileChannel.open(file, StandardOpenOption.READ)) {
            long pos = 0;
            long window = 1L << 30;
            while (pos < target.byteSize()) {
                ByteBuffer dst = target.asSlice(pos, Math.min(window, target.byteSize() - pos)).asByteBuffer();
                while (dst.hasRemaining()) {
                    int n = fc.read(dst, pos + dst.position());
                    if (n < 0) {
                        throw new IOException(file + " ended early");
                    }
                }
                pos += window;
            }
        }
    }
}
