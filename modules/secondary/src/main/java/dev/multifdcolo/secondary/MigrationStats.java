package dev.multifdcolo.secondary;

import java.util.concurrent.atomic.LongAdder;

/** Counters of one incoming migration, updated from every channel's event loop. */
public final class MigrationStats {
    public final long startNanos = System.nanoTime();
    public final LongAdder bytes = new LongAdder();
    public final LongAdder normalPages = new LongAdder();
    public final LongAdder zeroPages = new LongAdder();
    public final LongAdder packets = new LongAdder();
    public final LongAdder syncs = new LongAdder();
    public final LongAdder mainPages = new LongAdder();
    private final LongAdder[] channelBytes;

    MigrationStats(int channels) {
        channelBytes = new LongAdder[channels + 1];
        for (int i = 0; i < channelBytes.length; i++) {
            channelBytes[i] = new LongAdder();
        }
    }

    /** @param channel -1 for the main channel */
    void addBytes(int channel, long n) {
        bytes.add(n);
        channelBytes[channel + 1].add(n);
    }

    public long channelBytes(int channel) {
        return channelBytes[channel + 1].sum();
    }

    public int channels() {
        return channelBytes.length - 1;
    }

    public double seconds() {
        return (System.nanoTime() - startNanos) / 1e9;
    }

    @Override
    public String toString() {
        double s = seconds();
        long b = bytes.sum();
        return String.format("%,d bytes, %,d normal + %,d zero pages, %,d packets, %,d syncs, %.2f s, %.1f MB/s",
                b, normalPages.sum(), zeroPages.sum(), packets.sum(), syncs.sum(), s, b / 1e6 / Math.max(s, 1e-9));
    }
}
