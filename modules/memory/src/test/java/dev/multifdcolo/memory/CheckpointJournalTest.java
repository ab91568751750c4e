package dev.multifdcolo.memory;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The redo record and the commit file of a file-backed COLO image, without a process crash. */
class CheckpointJournalTest {
    static final List<BlockSpec> SPECS = List.of(new BlockSpec("pc.ram", 256L * Pages.SIZE),
            new BlockSpec("0000:00:02.0/vga.vram", 64L * Pages.SIZE));

    static GuestMemory image(Path dir) throws Exception {
        GuestMemory m = GuestMemory.allocate(SPECS, 1L << 30, Backing.files(dir));
        m.enableColo(Backing.files(dir));
        return m;
    }

    /** The primary's checkpoint: page p of every block gets value v in the cache and is marked dirty. */
    static void receive(GuestMemory m, long v, int... pages) {
        for (RamBlock b : m.blocks()) {
            for (int p : pages) {
                if (p < b.pages()) {
                    b.cache().set(ValueLayout.JAVA_LONG_UNALIGNED, (long) p * Pages.SIZE + 8, v);
                    b.bitmap().set(p);
                }
            }
        }
    }

    static void flushAll(GuestMemory m) {
        for (RamBlock b : m.blocks()) {
            ColoFlush.flush(b, 0, b.bitmap().wordCount());
        }
    }

    @Test
    void interruptedFlushIsRedoneAndCommitted(@TempDir Path dir) throws Exception {
        String epoch1;
        String epoch2;
        try (GuestMemory m = image(dir)) {
            receive(m, 7, 0, 1, 2, 100);
            flushAll(m);
            CheckpointJournal j = CheckpointJournal.of(dir, m);
            j.commit(0, new byte[]{0});
            receive(m, 8, 1, 2, 3, 63, 64, 200);
            j.beginFlush(1, new byte[]{1});
            flushAll(m);
            j.commit(1, new byte[]{1, 1});
            epoch1 = m.fastDigest();
            assertFalse(Files.exists(dir.resolve(CheckpointJournal.REDO)));
            receive(m, 9, 2, 5, 66, 255);
            j.beginFlush(2, new byte[]{2, 2, 2});
            assertTrue(Files.exists(dir.resolve(CheckpointJournal.REDO)));
            assertEquals(4 + 2, m.dirtyPages(), "the redo record leaves the bitmap alone");
            // crash in the middle of the flush: only the first block's words were copied
            RamBlock first = m.blocks().get(0);
            ColoFlush.flush(first, 0, 1);
            assertFalse(epoch1.equals(m.fastDigest()));
            // what a finished flush would have produced
            flushAll(m);
            epoch2 = m.fastDigest();
            // undo: put back the epoch-1 bytes of page 2 (as if the flush had not reached it)
            first.guest().set(ValueLayout.JAVA_LONG_UNALIGNED, 2L * Pages.SIZE + 8, 8L);
        }
        assertEquals(1, CheckpointJournal.committedEpoch(dir));
        try (CheckpointJournal.Recovery r = CheckpointJournal.recover(dir)) {
            assertEquals(2, r.epoch());
            assertTrue(r.redone());
            assertEquals(4 + 2, r.redonePages());
            assertArrayEquals(new byte[]{2, 2, 2}, r.deviceState());
            assertEquals(epoch2, r.memory().fastDigest());
        }
        assertFalse(Files.exists(dir.resolve(CheckpointJournal.REDO)));
        try (CheckpointJournal.Recovery r = CheckpointJournal.recover(dir)) {
            assertEquals(2, r.epoch());
            assertFalse(r.redone());
            assertEquals(epoch2, r.memory().fastDigest());
        }
        assertEquals(List.of("device-state-2.bin"), Files.list(dir).map(p -> p.getFileName().toString())
                .filter(n -> n.startsWith("device-state")).toList());
    }

    @Test
    void withoutRedoTheCommittedEpochIsKeptEvenIfTheCacheMovedOn(@TempDir Path dir) throws Exception {
        String epoch0;
        try (GuestMemory m = image(dir)) {
            receive(m, 5, 10, 11);
            flushAll(m);
            CheckpointJournal.of(dir, m).commit(0, new byte[]{4});
            epoch0 = m.fastDigest();
            receive(m, 6, 11, 12);   // a checkpoint half received when the process died
        }
        try (CheckpointJournal.Recovery r = CheckpointJournal.recover(dir)) {
            assertEquals(0, r.epoch());
            assertFalse(r.redone());
            assertArrayEquals(new byte[]{4}, r.deviceState());
            assertEquals(epoch0, r.memory().fastDigest());
        }
    }

    @Test
    void aNewSessionInvalidatesTheOldCheckpoint(@TempDir Path dir) throws Exception {
        try (GuestMemory m = image(dir)) {
            CheckpointJournal.of(dir, m).commit(0, new byte[]{4});
        }
        CheckpointJournal.invalidate(dir);
        assertEquals(-1, CheckpointJournal.committedEpoch(dir));
        assertThrows(CheckpointJournal.NoCheckpointException.class, () -> CheckpointJournal.recover(dir));
    }
}
