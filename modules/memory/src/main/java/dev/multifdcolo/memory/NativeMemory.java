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
    private static final MethodHandle MMAP;
    private static final MethodHandle MUNMAP;

    static {
        MethodHandle mmap = null;
        MethodHandle munmap = null;
        try {
            if (System.getProperty("os.name", "").toLowerCase().contains("linux")) {
                Linker linker = Linker.nativeLinker();
                SymbolLookup libc = linker.defaultLookup();
                mmap = linker.downcallHandle(libc.find("mmap").orElseThrow(), FunctionDescriptor.of(ValueLayout.ADDRESS,
                        ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
                munmap = linker.downcallHandle(libc.find("munmap").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
            }
        } catch (RuntimeException | LinkageError e) {
            LOG.info("mmap not available (" + e + "); guest memory is allocated and zero-filled by the JVM");
        }
        MMAP = mmap;
        MUNMAP = munmap;
    }

    private NativeMemory() {}

    /** {@code length} zero bytes, page aligned, released with {@code arena}. */
    static MemorySegment allocate(Arena arena, long length) {
        if (MMAP != null) {
            try {
                MemorySegment addr = (MemorySegment) MMAP.invokeExact(MemorySegment.NULL, length, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0L);
                if (addr.address() != -1L && addr.address() != 0L) {
                    return addr.reinterpret(length, arena, seg -> unmap(seg, length));
                }
                LOG.warning("mmap of " + length + " bytes failed; falling back to the JVM allocator");
            } catch (Throwable t) {
                LOG.warning("mmap failed (" + t + "); falling back to the JVM allocator");
            }
        }
        return arena.allocate(length, Pages.SIZE);
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
