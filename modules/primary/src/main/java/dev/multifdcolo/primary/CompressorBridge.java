package dev.multifdcolo.primary;

import dev.multifdcolo.wire.Compression;
import dev.multifdcolo.wire.compress.PageCompressor;

import java.nio.ByteBuffer;

/** Binds {@link PacketCompressor} to the wire module's {@link PageCompressor}. */
final class CompressorBridge {
    private CompressorBridge() {}

    static boolean available() {
        return true;
    }

    static int maxCompressedSize(Compression c, int inputBytes) {
        return PageCompressor.maxCompressedSize(c, inputBytes);
    }

    static PacketCompressor create(Compression c, int level) {
        PageCompressor pc = PageCompressor.create(c, level);
        return new PacketCompressor() {
            @Override
            public int compress(ByteBuffer pages, ByteBuffer out) {
                return pc.compress(pages, out);
            }

            @Override
            public void close() {
                pc.close();
            }
        };
    }
}
