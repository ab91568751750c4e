package dev.multifdcolo.secondary;

import dev.multifdcolo.memory.Backing;
import dev.multifdcolo.memory.BlockSpec;
import dev.multifdcolo.memory.GuestMemory;
import dev.multifdcolo.memory.MemoryLimitException;
import dev.multifdcolo.memory.RamBlock;
import dev.multifdcolo.secondary.stream.FlushMode;
import dev.multifdcolo.secondary.stream.MainStreamDecoder;
import dev.multifdcolo.secondary.stream.MultifdChannelDecoder;
import dev.multifdcolo.secondary.stream.Progress;
import dev.multifdcolo.secondary.stream.RamSink;
import dev.multifdcolo.wire.Command;
import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.ProtocolException;
import dev.multifdcolo.wire.Rule;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Runs the main-channel and multifd decoders without a network, single-threaded, in random
 * splits: the main decoder runs until it pauses at a barrier, then every channel runs until it
 * pauses at its SYNC (or runs dry), then the barrier is released — the exact pairing of §4.3.
 */
final class DecoderHarness implements RamSink {
    final long maxRam;
    GuestMemory memory;
    byte[] deviceState;
    String vmdesc;
    String machine;
    final List<Command> commands = new ArrayList<>();
    int barriers;
    boolean precopyDone;

    DecoderHarness(long maxRam) {
        this.maxRam = maxRam;
    }

    /** Feeds the streams; returns normally when the precopy ended, else throws the decoder's error. */
    void run(byte[] main, List<byte[]> channels, Compression compression, FlushMode flush, Random rnd, int maxChunk) {
        run(main, channels, compression, flush, rnd, maxChunk, new byte[16]);
    }

    void run(byte[] main, List<byte[]> channels, Compression compression, FlushMode flush, Random rnd, int maxChunk,
             byte[] uuid) {
        int n = channels.size();
        boolean[] arrived = new boolean[n];
        int[] bound = {0};
        MultifdChannelDecoder[] ch = new MultifdChannelDecoder[n];
        boolean[] seen = new boolean[n];
        for (int i = 0; i < n; i++) {
            final int idx = i;
            ch[i] = new MultifdChannelDecoder(n, uuid, compression, this, new MultifdChannelDecoder.Listener() {
                @Override
                public void onHello(int id) {
                    ProtocolException.check(!seen[id], Rule.HELLO_DUPLICATE_ID, "received id %d already setup", id);
                    seen[id] = true;
                    bound[0]++;
                }

                @Override
                public void onSync(int id) {
                    arrived[idx] = true;
                }

                @Override
                public void onPacket(int id, int normal, int zero, long payload) {
                }
            });
        }
        Chunker[] in = new Chunker[n];
        for (int i = 0; i < n; i++) {
            in[i] = new Chunker(channels.get(i), rnd, maxChunk);
        }
        MainStreamDecoder[] md = new MainStreamDecoder[1];
        boolean[] barrierPending = {false};
        md[0] = new MainStreamDecoder(new MainStreamDecoder.Options(n, flush, 64 << 20, 16 << 20, null, uuid), this,
                new MainStreamDecoder.Listener() {
                    @Override
                    public void onConfiguration(String m) {
                        machine = m;
                    }

                    @Override
                    public void onCommand(Command command, ByteBuffer data) {
                        commands.add(command);
                    }

                    @Override
                    public void onMemSize(List<BlockSpec> blocks) {
                        try {
                            memory = GuestMemory.allocate(blocks, maxRam, Backing.anonymous());
                        } catch (MemoryLimitException e) {
                            throw new ProtocolException(Rule.MEM_SIZE_LIMIT, e.getMessage());
                        }
                    }

                    @Override
                    public boolean onBarrier() {
                        barriers++;
                        barrierPending[0] = true;
                        return true;
                    }



                    @Override
                    public void onPrecopyEnd(byte[] dev, String desc) {
                        deviceState = dev;
                        vmdesc = desc;
                        precopyDone = true;
                    }

                });
        Chunker mainIn = new Chunker(main, rnd, maxChunk);
        while (true) {
            Progress p = Progress.NEED_MORE;
            while (!mainIn.done()) {
                p = mainIn.feed(md[0]::feed);
                if (p != Progress.NEED_MORE) {
                    break;
                }
            }
            if (p == Progress.DONE || (mainIn.done() && p == Progress.NEED_MORE && !barrierPending[0])) {
                break;
            }
            // main is at a barrier: run every channel to its SYNC
            for (int i = 0; i < n; i++) {
                while (!arrived[i] && !in[i].done()) {
                    in[i].feed(ch[i]::feed);
                }
                if (!arrived[i]) {
                    throw new ProtocolException(Rule.SYNC_PROTOCOL, "channel " + i + " ended before its SYNC");
                }
            }
            java.util.Arrays.fill(arrived, false);
            barrierPending[0] = false;
            md[0].resume();
        }
        if (!precopyDone) {
            md[0].onClose();
        }
        for (int i = 0; i < n; i++) {
            // whatever follows the last sync (nothing, in a well-formed stream) is applied too
            while (!in[i].done()) {
                Progress p = in[i].feed(ch[i]::feed);
                if (p == Progress.PAUSED) {
                    throw new ProtocolException(Rule.SYNC_PROTOCOL, "channel " + i + " has a SYNC after the stream ended");
                }
            }
            ch[i].onClose();
            ch[i].close();
        }
    }

    /** Splits a byte array into random chunks and keeps leftovers. */
    static final class Chunker {
        private final byte[] data;
        private final Random rnd;
        private final int maxChunk;
        private int pos;
        private ByteBuffer cur;

        Chunker(byte[] data, Random rnd, int maxChunk) {
            this.data = data;
            this.rnd = rnd;
            this.maxChunk = maxChunk;
        }

        boolean done() {
            return pos >= data.length && (cur == null || !cur.hasRemaining());
        }

        Progress feed(java.util.function.Function<ByteBuffer, Progress> f) {
            if (cur == null || !cur.hasRemaining()) {
                int n = Math.min(data.length - pos, 1 + rnd.nextInt(maxChunk));
                // a direct buffer, like Netty's, at a random alignment
                cur = ByteBuffer.allocateDirect(n);
                cur.put(data, pos, n).flip();
                pos += n;
            }
            return f.apply(cur);
        }
    }

    // ------------------------------------------------------------------ RamSink

    @Override
    public RamBlock block(String name) {
        return memory == null ? null : memory.block(name);
    }

    @Override
    public MemorySegment pageTarget(RamBlock block) {
        return block.guest();
    }

    @Override
    public void zeroPages(RamBlock block, long[] offsets, int from, int count) {
        for (int i = from; i < from + count; i++) {
            block.zeroPage(offsets[i]);
        }
    }

    @Override
    public void normalPagesWritten(RamBlock block, long[] offsets, int from, int count) {
    }

    byte[] ram(String block) {
        return memory.block(block).guest().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }
}
