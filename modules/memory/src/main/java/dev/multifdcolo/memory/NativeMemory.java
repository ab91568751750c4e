package dev.multifdcolo.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.logging.Logger;

/**
 * Anonymous memory straight from the kernel ({@code mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)})
 * for guest images and COLO caches. Unlike {@link Arena#allocate}, nothing is zero-filled up front:
 * pages are zero when first touched, so announcing 64 GiB costs nothing until pages arrive, and the
 * first-touch cost is spread over the channels that write them (in parallel, on their own event
 * loops) instead of one long memset on the main channel's loop. Unmapped when the arena closes.
 * Falls back to {@code Arena.allocate} where mmap is not available.
 */
final class NativeMemory {
    private static final Logger LOG = Logger.getLogger(NativeMemory.class.getName());
    private static final int PROT_READ = 1;
    private static final int PROT_WRITE = 2;
    private static final int MAP_PRIVATE = 0x02;
    private static final int MAP_ANONYMOUS = 0x20;
    private static final int MAP_NORESERVE = 0x4000;
    private static final int MADV_POPULATE_WRITE = 23;    // Linux 5.14+
    private static final MethodHandle MMAP;
    private static final MethodHandle MUNMAP;
    private static final MethodHandle MADVISE;
    /**
     * Pre-fault new guest memory on a background thread ({@code -Dmfc.prefault=true}). Off by
     * default: on the 2-core lab machine it did not change loopback throughput (the CPU is
     * shared with the sender), and it commits all memory up front.
     */
    static final boolean PREFAULT = Boolean.parseBoolean(System.getProperty("mfc.prefault", "false"));

    static {
        MethodHandle mmap = null;
        MethodHandle munmap = null;
        MethodHandle madvise = null;
        try {
            if (System.getProperty("os.name", "").toLowerCase().contains("linux")) {
                Linker linker = Linker.nativeLinker();
                SymbolLookup libc = linker.defaultLookup();
                mmap = linker.downcallHandle(libc.find("mmap").orElseThrow(), FunctionDescriptor.of(ValueLayout.ADDRESS,
                        ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
                munmap = linker.downcallHandle(libc.find("munmap").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
                madvise = linker.downcallHandle(libc.find("madvise").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
            }
        } catch (RuntimeException | LinkageError e) {
            LOG.info("mmap not available (" + e + "); guest memory is allocated and zero-filled by the JVM");
        }
        MMAP = mmap;
        MUNMAP = munmap;
        MADVISE = madvise;
    }

    private NativeMemory() {}

    /** {@code length} zero bytes, page aligned, released with {@code arena}. */
    static MemorySegment allocate(Arena arena, long length) {
        if (MMAP != null) {
            try {
                MemorySegment addr = (MemorySegment) MMAP.invokeExact(MemorySegment.NULL, length, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0L);
                if (addr.address() != -1L && addr.address() != 0L) {
                    MemorySegment seg = addr.reinterpret(length, arena, s -> unmap(s, length));
                    if (PREFAULT) {
                        prefault(seg);
                    }
                    return seg;
                }
                LOG.warning("mmap of " + length + " bytes failed; falling back to the JVM allocator");
            } catch (Throwable t) {
                LOG.warning("mmap failed (" + t + "); falling back to the JVM allocator");
            }
        }
        return arena.allocate(length, Pages.SIZE);
    }

    /**
     * Faults the mapping in on a background thread (MADV_POPULATE_WRITE: page tables and zeroed
     * pages, no data written), so the kernel's page zeroing overlaps the network transfer instead
     * of stalling the event loops at each first touch. Safe while channels write: it changes no
     * content. Done in 64 MiB steps so an unmap (arena close) never races a long call.
     */
    private static void prefault(MemorySegment seg) {
        if (MADVISE == null) {
            return;
        }
        Thread t = new Thread(() -> {
            long step = 64L << 20;
            try {
                for (long off = 0; off < seg.byteSize(); off += step) {
                    if (!seg.scope().isAlive()) {
                        return;
                    }
                    int rc = (int) MADVISE.invokeExact(seg.asSlice(off), Math.min(step, seg.byteSize() - off),
                            MADV_POPULATE_WRITE);
                    if (rc != 0) {
                        return;          // an older kernel: first touches fault as usual
                    }
                }
            } catch (Throwable e) {
                // arena closed under us or madvise unavailable: harmless
            }
        }, "guest-memory-prefault");
        t.setDaemon(true);
        t.setPriority(Thread.MIN_PRIORITY);
        t.start();
    }

    private static void unmap(MemorySegment seg, long length) {
        try {
            int rc = (int) MUNMAP.invokeExact(seg, length);
            if (rc != 0) {
                LOG.warning("munmap failed for " + length + " bytes");
            }
        } catch (Throwable t) {
            LOG.warning("munmap failed: " + t);
        }
    }
}
