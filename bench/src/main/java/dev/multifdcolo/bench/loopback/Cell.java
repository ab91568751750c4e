package dev.multifdcolo.bench.loopback;

import dev.multifdcolo.wire.Compression;

import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One benchmark cell: who receives (our receiver or the raw sink) and what the sender sends
 * (plain precopy or multifd with N channels, with or without compression).
 *
 * <p>Names: {@code [recv-|sink-](plain|mfN)[-zlib|-zstd][+spread][+thp]}, e.g. {@code recv-mf4-zstd},
 * {@code sink-plain}; without a prefix a cell is a receiver cell ({@code mf4} = {@code recv-mf4}).
 * Variants, for what-if experiments on the child only (the sender is the same):
 * {@code +spread} = the child picks its port before deploying its verticle instances, so they
 * share it and connections spread over the event loops (the {@code --share-port} fix);
 * {@code +thp} = the child runs with {@code GLIBC_TUNABLES=glibc.malloc.hugetlb=1}, so the large
 * malloc behind the guest RAM arena is madvised for transparent huge pages; {@code +shm} = the
 * receiver maps its guest RAM from files in a fresh /dev/shm directory (its existing
 * {@code backing-dir} option) instead of the anonymous arena: no zeroing pass at allocation,
 * pages are faulted in lazily as they are written.
 */
record Cell(String name, boolean sink, int channels, Compression compression, boolean spread, boolean thp,
            boolean shm) {

    static final List<String> DEFAULT = List.of("recv-plain", "sink-plain", "recv-mf4", "sink-mf4",
            "recv-mf4-zlib", "recv-mf4-zstd");

    private static final Pattern NAME = Pattern.compile(
            "(?:(recv|sink)-)?(plain|mf(\\d+)|multifd-?(\\d+))(?:-(none|zlib|zstd))?((?:\\+(?:spread|thp|shm))*)");

    static Cell parse(String text) {
        Matcher m = NAME.matcher(text.trim().toLowerCase(Locale.ROOT));
        if (!m.matches()) {
            throw new IllegalArgumentException("bad cell '" + text + "': want [recv-|sink-](plain|mfN)[-zlib|-zstd][+spread][+thp][+shm]");
        }
        boolean sink = "sink".equals(m.group(1));
        int channels = m.group(2).equals("plain") ? 0 : Integer.parseInt(m.group(3) != null ? m.group(3) : m.group(4));
        Compression c = m.group(5) == null ? Compression.NONE : Compression.fromQemuName(m.group(5));
        if (channels == 0 && c != Compression.NONE) {
            throw new IllegalArgumentException("cell '" + text + "': compression needs multifd");
        }
        if (channels > 255) {
            throw new IllegalArgumentException("cell '" + text + "': at most 255 channels");
        }
        String v = m.group(6);
        if (sink && v.contains("+shm")) {
            throw new IllegalArgumentException("cell '" + text + "': +shm is a receiver variant");
        }
        return of(sink, channels, c, v.contains("+spread"), v.contains("+thp"), v.contains("+shm"));
    }

    static Cell of(boolean sink, int channels, Compression c, boolean spread, boolean thp, boolean shm) {
        String name = (sink ? "sink-" : "recv-") + (channels == 0 ? "plain" : "mf" + channels)
                + (c == Compression.NONE ? "" : "-" + c.qemuName()) + (spread ? "+spread" : "") + (thp ? "+thp" : "")
                + (shm ? "+shm" : "");
        return new Cell(name, sink, channels, c, spread, thp, shm);
    }

    /**
     * The raw-sink cell a receiver cell is compared with: the sink fed the same stream if it was
     * run, else the same channels uncompressed; with the same {@code +spread} (and {@code +thp},
     * when such a sink was run).
     */
    Cell sinkFor(List<Cell> cells) {
        for (Compression c : new Compression[]{compression, Compression.NONE}) {
            for (boolean t : new boolean[]{thp, false}) {
                Cell s = of(true, channels, c, spread, t, false);
                if (cells.contains(s)) {
                    return s;
                }
            }
        }
        return null;
    }

    String describe() {
        return (sink ? "raw sink" : "receiver") + ", " + (channels == 0 ? "plain" : "multifd " + channels)
                + (compression == Compression.NONE ? "" : " " + compression.qemuName())
                + (spread ? ", connections spread over the loops" : "") + (thp ? ", THP malloc" : "")
                + (shm ? ", guest RAM in /dev/shm files" : "");
    }
}
