package dev.multifdcolo.memory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The guest RAM image of one incoming migration: the blocks of the source's MEM_SIZE list, each
 * backed by a zeroed {@link MemorySegment}. Created only after the list was checked against the
 * configured maximum, so a wire-supplied size never allocates more than the operator allowed.
 */
public final class GuestMemory implements AutoCloseable {
    private final Arena arena;
    private final List<RamBlock> blocks;
    private final Map<String, RamBlock> byName;
    private final long total;

    private GuestMemory(Arena arena, List<RamBlock> blocks) {
        this.arena = arena;
        this.blocks = Collections.unmodifiableList(blocks);
        Map<String, RamBlock> m = new LinkedHashMap<>();
        long t = 0;
        for (RamBlock b : blocks) {
            m.put(b.name(), b);
            t += b.length();
        }
        this.byName = m;
        this.total = t;
    }

    /**
     * Allocates the blocks after checking them: positive page-multiple lengths, unique names,
     * total at most {@code maxTotalBytes}.
     */
    public static GuestMemory allocate(List<BlockSpec> specs, long maxTotalBytes, Backing backing)
            throws MemoryLimitException {
        long total = 0;
        java.util.Set<String> names = new java.util.HashSet<>();
        for (BlockSpec s : specs) {
            if (s.length() % Pages.SIZE != 0) {
                throw new MemoryLimitException("block " + s.name() + " length " + s.length() + " is not a page multiple");
            }
            if (!names.add(s.name())) {
                throw new MemoryLimitException("block " + s.name() + " listed twice");
            }
            total += s.length();
            if (total > maxTotalBytes || total < 0) {
                throw new MemoryLimitException("RAM of " + total + "+ bytes exceeds the limit of " + maxTotalBytes + " bytes");
            }
        }
        Arena arena = Arena.ofShared();
        List<RamBlock> blocks = new ArrayList<>();
        try {
            int i = 0;
            for (BlockSpec s : specs) {
                MemorySegment seg = switch (backing) {
                    case Backing.Anonymous a -> NativeMemory.allocate(arena, s.length());
                    case Backing.Files f -> mapFile(f.directory().resolve(fileName(s.name())), s.length(), arena, true);
                };
                blocks.add(new RamBlock(i++, s.name(), s.length(), seg));
            }
        } catch (RuntimeException | OutOfMemoryError e) {
            arena.close();
            throw e;
        }
        return new GuestMemory(arena, blocks);
    }

    /** A file name for a block: RAMBlock ids may contain '/' and ':' (e.g. "0000:00:02.0/vga.vram"). */
    public static String fileName(String blockName) {
        StringBuilder sb = new StringBuilder();
        for (char c : blockName.toCharArray()) {
            sb.append(Character.isLetterOrDigit(c) || c == '.' || c == '-' || c == '_' ? c : '_');
        }
        return sb.append(".img").toString();
    }

    /**
     * Maps the existing files of a file-backed replica without truncating them (crash recovery,
     * {@link CheckpointJournal}): every block's guest image and, with {@code withCache}, its COLO
     * cache. Each file must exist and hold exactly the block's length.
     */
    public static GuestMemory open(List<BlockSpec> specs, Backing.Files backing, boolean withCache) {
        Arena arena = Arena.ofShared();
        List<RamBlock> blocks = new ArrayList<>();
        try {
            int i = 0;
            for (BlockSpec s : specs) {
                Path file = backing.directory().resolve(fileName(s.name()));
                RamBlock b = new RamBlock(i++, s.name(), s.length(), mapFile(existing(file, s.length()), s.length(), arena, false));
                if (withCache) {
                    Path cache = backing.directory().resolve(fileName(s.name()) + ".cache");
                    b.enableColo(mapFile(existing(cache, s.length()), s.length(), arena, false));
                }
                blocks.add(b);
            }
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
        return new GuestMemory(arena, blocks);
    }

    private static Path existing(Path file, long length) {
        try {
            long size = Files.size(file);
            if (size != length) {
                throw new UncheckedIOException(new IOException(file + " holds " + size + " bytes, expected " + length));
            }
            return file;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open " + file, e);
        }
    }

    private static MemorySegment mapFile(Path file, long length, Arena arena, boolean truncate) {
        try {
            Files.createDirectories(file.getParent());
            var opts = truncate
                    ? new StandardOpenOption[]{StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE,
                            StandardOpenOption.TRUNCATE_EXISTING}
                    : new StandardOpenOption[]{StandardOpenOption.READ, StandardOpenOption.WRITE};
            try (FileChannel ch = FileChannel.open(file, opts)) {
                return ch.map(FileChannel.MapMode.READ_WRITE, 0, length, arena);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot map " + file, e);
        }
    }

    /** True when the guest images (and caches) are file mappings, which {@link #force} can sync. */
    public boolean fileBacked() {
        return !blocks.isEmpty() && blocks.get(0).guest().isMapped();
    }

    /**
     * Writes the dirty pages of the mapped files back to disk (msync): the guest images, or with
     * {@code caches} the COLO caches. A no-op for anonymous memory.
     */
    public void force(boolean caches) {
        for (RamBlock b : blocks) {
            MemorySegment s = caches ? b.cache() : b.guest();
            if (s != null && s.isMapped()) {
                s.force();
            }
        }
    }

    /**
     * Allocates a zeroed COLO cache and a clear dirty bitmap for every block (§9.5). The cache
     * uses the same backing as the guest image (a file-backed replica gets {@code NAME.cache}).
     */
    public synchronized void enableColo(Backing backing) {
        for (RamBlock b : blocks) {
            if (b.cache() != null) {
                continue;
            }
            MemorySegment seg = switch (backing) {
                case Backing.Anonymous a -> NativeMemory.allocate(arena, b.length());
                case Backing.Files f -> mapFile(f.directory().resolve(fileName(b.name()) + ".cache"), b.length(), arena, true);
            };
            b.enableColo(seg);
        }
    }

    public boolean coloEnabled() {
        return !blocks.isEmpty() && blocks.get(0).cache() != null;
    }

    /** Pages marked dirty in every block's COLO bitmap. */
    public long dirtyPages() {
        long n = 0;
        for (RamBlock b : blocks) {
            if (b.bitmap() != null) {
                n += b.bitmap().dirtyPages();
            }
        }
        return n;
    }

    /**
     * A fast digest of the guest images (CRC32C per block, combined with names and lengths):
     * cheap enough to log at every COLO commit; not a cryptographic hash.
     */
    public String fastDigest() {
        return fastDigest(false);
    }

    /** {@link #fastDigest()} of the COLO caches instead of the guest images. */
    public String fastDigest(boolean caches) {
        java.util.zip.CRC32C all = new java.util.zip.CRC32C();
        for (RamBlock b : blocks) {
            MemorySegment s = caches ? b.cache() : b.guest();
            java.util.zip.CRC32C c = new java.util.zip.CRC32C();
            long chunk = 1 << 22;
            for (long off = 0; off < s.byteSize(); off += chunk) {
                c.update(s.asSlice(off, Math.min(chunk, s.byteSize() - off)).asByteBuffer());
            }
            all.update(b.name().getBytes(java.nio.charset.StandardCharsets.UTF_8));
            all.update(java.nio.ByteBuffer.allocate(16).putLong(b.length()).putLong(c.getValue()).flip());
        }
        return String.format("%08x", all.getValue());
    }

    public List<RamBlock> blocks() {
        return blocks;
    }

    /** @return the block, or null if the source never announced it */
    public RamBlock block(String name) {
        return byName.get(name);
    }

    public long totalBytes() {
        return total;
    }

    /** SHA-256 of one block's guest image, hex. */
    public static String sha256(MemorySegment image) {
        MessageDigest md = sha256();
        long chunk = 1 << 20;
        for (long off = 0; off < image.byteSize(); off += chunk) {
            md.update(image.asSlice(off, Math.min(chunk, image.byteSize() - off)).asByteBuffer());
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** One digest over every block's name, length and content, in list order. */
    public String digest() {
        MessageDigest md = sha256();
        for (RamBlock b : blocks) {
            md.update(b.name().getBytes(java.nio.charset.StandardCharsets.UTF_8));
            md.update((byte) 0);
            md.update(HexFormat.of().parseHex(sha256(b.guest())));
        }
        return HexFormat.of().formatHex(md.digest());
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public void close() {
        arena.close();
    }
}
