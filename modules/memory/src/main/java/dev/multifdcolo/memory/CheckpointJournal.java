package dev.multifdcolo.memory;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.CRC32C;

/**
 * Crash consistency of a file-backed COLO replica: the guest image files in the backing directory
 * always hold exactly one committed checkpoint, also after {@code kill -9} at any moment.
 *
 * <p>Two files next to the images:
 * <ul>
 *   <li>{@code checkpoint.json}: the committed epoch, the file with its device state
 *       ({@code device-state-N.bin}) and the block list;</li>
 *   <li>{@code redo.bin}: exists only while checkpoint k is flushed cache → guest: epoch k, per
 *       block the dirty-bitmap words of the flush, the device state, a CRC32C.</li>
 * </ul>
 * Every file is written as a temporary, fsync'ed, renamed into place, and the directory fsync'ed.
 *
 * <p>Order of one checkpoint: the whole checkpoint is in the cache → {@link #beginFlush} (msync the
 * caches, then the redo record is durable) → the flush copies pages cache → guest → {@link #commit}
 * (msync the guest images, checkpoint.json names epoch k, redo deleted) → only then VMSTATE_LOADED,
 * so the primary sends nothing that changes the cache while a redo record exists. {@link #recover}
 * re-copies an interrupted flush from the cache and commits it; without a redo record the images
 * are the epoch in checkpoint.json as they are.
 */
public final class CheckpointJournal {
    public static final String CHECKPOINT = "checkpoint.json";
    public static final String REDO = "redo.bin";
    private static final long MAGIC = 0x4d46435245444f31L;   // "MFCREDO1"

    private final Path dir;
    private final GuestMemory memory;

    private CheckpointJournal(Path dir, GuestMemory memory) {
        this.dir = dir;
        this.memory = memory;
    }

    /**
     * The journal of a new session in {@code dir}: any earlier checkpoint there is invalidated
     * first (call before the image files are truncated), so a crash during the new precopy is never
     * mistaken for a committed checkpoint.
     */
    public static void invalidate(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return;
        }
        Files.deleteIfExists(dir.resolve(CHECKPOINT));
        Files.deleteIfExists(dir.resolve(REDO));
        syncDir(dir);
        deleteBlobs(dir, null);
    }

    /** A journal for the replica's image in {@code dir} (its blocks must have COLO caches before {@link #beginFlush}). */
    public static CheckpointJournal of(Path dir, GuestMemory memory) {
        return new CheckpointJournal(dir, memory);
    }

    public Path directory() {
        return dir;
    }

    /**
     * Before checkpoint {@code epoch} is flushed: the caches are written back (msync) and a redo
     * record with the pages to flush (the current COLO bitmaps, not cleared) and the device state
     * is durable. Call while nothing writes the cache or the bitmaps.
     */
    public void beginFlush(long epoch, byte[] deviceState) throws IOException {
        memory.force(true);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (DataOutputStream out = new DataOutputStream(bytes)) {
            out.writeLong(MAGIC);
            out.writeLong(epoch);
            out.writeInt(memory.blocks().size());
            for (RamBlock b : memory.blocks()) {
                byte[] name = b.name().getBytes(StandardCharsets.UTF_8);
                out.writeInt(name.length);
                out.write(name);
                out.writeLong(b.length());
                long[] words = b.bitmap().snapshot();
                int set = 0;
                for (long w : words) {
                    set += w != 0 ? 1 : 0;
                }
                out.writeInt(words.length);
                out.writeInt(set);
                for (int i = 0; i < words.length; i++) {
                    if (words[i] != 0) {
                        out.writeInt(i);
                        out.writeLong(words[i]);
                    }
                }
            }
            out.writeInt(deviceState.length);
            out.write(deviceState);
            out.flush();
            CRC32C crc = new CRC32C();
            crc.update(bytes.toByteArray());
            out.writeLong(crc.getValue());
        }
        writeDurably(dir.resolve(REDO), bytes.toByteArray());
    }

    /**
     * Checkpoint {@code epoch} is in the guest images: msync them, write its device state and
     * checkpoint.json, delete the redo record and the older device state. When this returns the
     * commit survives a crash; only then may the primary be told VMSTATE_LOADED.
     */
    public void commit(long epoch, byte[] deviceState) throws IOException {
        memory.force(false);
        String blobFile = "device-state-" + epoch + ".bin";
        writeDurably(dir.resolve(blobFile), deviceState);
        StringBuilder json = new StringBuilder("{\n  \"format\": 1,\n  \"epoch\": ").append(epoch)
                .append(",\n  \"device-state\": \"").append(blobFile).append("\",\n  \"device-state-bytes\": ")
                .append(deviceState.length).append(",\n  \"blocks\": [");
        List<RamBlock> blocks = memory.blocks();
        for (int i = 0; i < blocks.size(); i++) {
            json.append(i == 0 ? "\n" : ",\n").append("    {\"name\": \"").append(escape(blocks.get(i).name()))
                    .append("\", \"length\": ").append(blocks.get(i).length()).append('}');
        }
        json.append("\n  ]\n}\n");
        writeDurably(dir.resolve(CHECKPOINT), json.toString().getBytes(StandardCharsets.UTF_8));
        Files.deleteIfExists(dir.resolve(REDO));
        syncDir(dir);
        deleteBlobs(dir, blobFile);
    }

    // ------------------------------------------------------------------ recovery

    /**
     * What {@link #recover} found: the committed epoch now in the image files, its device state,
     * whether an interrupted flush was redone (and how many pages it copied), and the image
     * (mapped from the files; the caller closes it).
     */
    public record Recovery(long epoch, byte[] deviceState, boolean redone, long redonePages, GuestMemory memory)
            implements AutoCloseable {
        @Override
        public void close() {
            memory.close();
        }
    }

    /** No checkpoint was ever committed in the directory (or a new session invalidated it). */
    public static final class NoCheckpointException extends IOException {
        NoCheckpointException(String message) {
            super(message);
        }
    }

    /** Quick look: the epoch committed in {@code dir}'s checkpoint.json, or -1 (no redo applied). */
    public static long committedEpoch(Path dir) throws IOException {
        Committed c = readCheckpoint(dir);
        return c == null ? -1 : c.epoch;
    }

    /**
     * Brings {@code dir} back to one committed checkpoint after a crash: an interrupted flush
     * (a redo record newer than checkpoint.json) is copied again cache → guest and committed;
     * a redo record that was already committed is dropped. The files are not truncated.
     */
    public static Recovery recover(Path dir) throws IOException {
        try (DirectoryStream<Path> tmp = Files.newDirectoryStream(dir, "*.tmp")) {
            for (Path t : tmp) {
                Files.deleteIfExists(t);
            }
        }
        Committed c = readCheckpoint(dir);
        Redo r = readRedo(dir);
        if (c == null && r == null) {
            throw new NoCheckpointException("no committed checkpoint in " + dir);
        }
        boolean redo = r != null && (c == null || r.epoch > c.epoch);
        List<BlockSpec> specs = redo ? r.blocks : c.blocks;
        GuestMemory m = GuestMemory.open(specs, new Backing.Files(dir), redo);
        try {
            if (redo) {
                long pages = 0;
                for (int i = 0; i < specs.size(); i++) {
                    pages += ColoFlush.copy(m.blocks().get(i), r.words.get(i)).pages();
                }
                new CheckpointJournal(dir, m).commit(r.epoch, r.deviceState);
                return new Recovery(r.epoch, r.deviceState, true, pages, m);
            }
            if (r != null) {
                Files.deleteIfExists(dir.resolve(REDO));
                syncDir(dir);
            }
            byte[] blob = Files.readAllBytes(dir.resolve(c.blobFile));
            return new Recovery(c.epoch, blob, false, 0, m);
        } catch (IOException | RuntimeException e) {
            m.close();
            throw e;
        }
    }

    private record Committed(long epoch, String blobFile, List<BlockSpec> blocks) {}

    private record Redo(long epoch, List<BlockSpec> blocks, List<long[]> words, byte[] deviceState) {}

    private static final Pattern EPOCH = Pattern.compile("\"epoch\":\\s*(\\d+)");
    private static final Pattern BLOB = Pattern.compile("\"device-state\":\\s*\"([^\"]+)\"");
    private static final Pattern BLOCK = Pattern.compile("\\{\"name\":\\s*\"((?:[^\"\\\\]|\\\\.)*)\",\\s*\"length\":\\s*(\\d+)}");

    private static Committed readCheckpoint(Path dir) throws IOException {
        String json;
        try {
            json = Files.readString(dir.resolve(CHECKPOINT));
        } catch (NoSuchFileException e) {
            return null;
        }
        Matcher e = EPOCH.matcher(json);
        Matcher b = BLOB.matcher(json);
        if (!e.find() || !b.find()) {
            throw new IOException(dir.resolve(CHECKPOINT) + ": no epoch or device-state");
        }
        List<BlockSpec> blocks = new ArrayList<>();
        Matcher m = BLOCK.matcher(json);
        while (m.find()) {
            blocks.add(new BlockSpec(unescape(m.group(1)), Long.parseLong(m.group(2))));
        }
        if (blocks.isEmpty()) {
            throw new IOException(dir.resolve(CHECKPOINT) + ": no blocks");
        }
        return new Committed(Long.parseLong(e.group(1)), b.group(1), blocks);
    }

    private static Redo readRedo(Path dir) throws IOException {
        byte[] all;
        try {
            all = Files.readAllBytes(dir.resolve(REDO));
        } catch (NoSuchFileException e) {
            return null;
        }
        if (all.length < 8 + 8 + 4 + 4 + 8) {
            throw new IOException(dir.resolve(REDO) + ": truncated (" + all.length + " bytes)");
        }
        CRC32C crc = new CRC32C();
        crc.update(all, 0, all.length - 8);
        ByteBuffer in = ByteBuffer.wrap(all);
        if (in.getLong(all.length - 8) != crc.getValue() || in.getLong() != MAGIC) {
            throw new IOException(dir.resolve(REDO) + ": bad magic or checksum");
        }
        long epoch = in.getLong();
        int n = in.getInt();
        List<BlockSpec> blocks = new ArrayList<>(n);
        List<long[]> words = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            byte[] name = new byte[in.getInt()];
            in.get(name);
            long length = in.getLong();
            long[] w = new long[in.getInt()];
            if (w.length != (length / Pages.SIZE + 63) / 64) {
                throw new IOException(dir.resolve(REDO) + ": bitmap of " + w.length + " words for " + length + " bytes");
            }
            int set = in.getInt();
            for (int k = 0; k < set; k++) {
                int idx = in.getInt();
                w[idx] = in.getLong();
            }
            blocks.add(new BlockSpec(new String(name, StandardCharsets.UTF_8), length));
            words.add(w);
        }
        byte[] blob = new byte[in.getInt()];
        in.get(blob);
        return new Redo(epoch, blocks, words, blob);
    }

    // ------------------------------------------------------------------ files

    private static void writeDurably(Path file, byte[] data) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer b = ByteBuffer.wrap(data);
            while (b.hasRemaining()) {
                ch.write(b);
            }
            ch.force(true);
        }
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        syncDir(file.getParent());
    }

    private static void syncDir(Path dir) throws IOException {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        }
    }

    private static void deleteBlobs(Path dir, String keep) throws IOException {
        try (DirectoryStream<Path> s = Files.newDirectoryStream(dir, "device-state-*.bin")) {
            for (Path p : s) {
                if (!p.getFileName().toString().equals(keep)) {
                    Files.deleteIfExists(p);
                }
            }
        }
    }

    private static String escape(String s) {
        StringBuilder sb = new StringBuilder();
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    private static String unescape(String s) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c != '\\') {
                sb.append(c);
            } else if (s.charAt(i + 1) == 'u') {
                sb.append((char) Integer.parseInt(s.substring(i + 2, i + 6), 16));
                i += 5;
            } else {
                sb.append(s.charAt(++i));
            }
        }
        return sb.toString();
    }
}
