package dev.multifdcolo.wire;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.HexFormat;

/**
 * The 64-byte initial packet of a multifd channel (§2.1), identical in 7.2 and newest.
 *
 * <pre>
 *  0      4        8                 24  25        32                     64
 *  +------+--------+-----------------+---+---------+----------------------+
 *  |magic |version | uuid (16 bytes) |id | 7 x 0   | 4 x u64 reserved     |
 *  +------+--------+-----------------+---+---------+----------------------+
 * </pre>
 */
public final class MultifdHello {
    public static final int OFF_MAGIC = 0;
    public static final int OFF_VERSION = 4;
    public static final int OFF_UUID = 8;
    public static final int OFF_ID = 24;
    public static final int UUID_LEN = 16;

    private MultifdHello() {}

    /**
     * Validates a hello in the order of §2.2 and returns its channel id. The caller checks
     * duplicates (it owns the channel table).
     *
     * @param hello     exactly {@link Wire#HELLO_LEN} bytes starting at its position (not consumed)
     * @param channels  configured multifd-channels
     * @param uuid      expected VM UUID (16 bytes; all zero when the source has no -uuid)
     */
    public static int validate(ByteBuffer hello, int channels, byte[] uuid) {
        int p = hello.position();
        ByteBuffer b = hello.duplicate().order(ByteOrder.BIG_ENDIAN);
        int magic = b.getInt(p + OFF_MAGIC);
        ProtocolException.check(magic == Wire.MULTIFD_MAGIC, Rule.HELLO_MAGIC,
                "received magic 0x%08x, expected 0x%08x", magic, Wire.MULTIFD_MAGIC);
        int version = b.getInt(p + OFF_VERSION);
        ProtocolException.check(version == Wire.MULTIFD_VERSION, Rule.HELLO_VERSION,
                "received version %d, expected %d", version, Wire.MULTIFD_VERSION);
        byte[] got = new byte[UUID_LEN];
        b.get(p + OFF_UUID, got);
        if (!Arrays.equals(got, uuid)) {
            throw new ProtocolException(Rule.HELLO_UUID, "received uuid " + HexFormat.of().formatHex(got)
                    + ", expected " + HexFormat.of().formatHex(uuid));
        }
        int id = Byte.toUnsignedInt(b.get(p + OFF_ID));
        // QEMU only rejects id > channels (off by one); an id equal to the count is out of range too.
        ProtocolException.check(id < channels, Rule.HELLO_CHANNEL_ID,
                "received channel id %d, but only %d multifd channels are configured", id, channels);
        return id;
    }

    /** Writes a hello at the buffer's position and advances it by 64 bytes. */
    public static void encode(ByteBuffer out, byte[] uuid, int channelId) {
        if (uuid.length != UUID_LEN || channelId < 0 || channelId > 255) {
            throw new IllegalArgumentException("uuid must be 16 bytes and channel id 0..255");
        }
        ByteBuffer b = out.order(ByteOrder.BIG_ENDIAN);
        int p = b.position();
        b.putInt(Wire.MULTIFD_MAGIC).putInt(Wire.MULTIFD_VERSION).put(uuid).put((byte) channelId);
        while (b.position() < p + Wire.HELLO_LEN) {
            b.put((byte) 0);
        }
    }
}
