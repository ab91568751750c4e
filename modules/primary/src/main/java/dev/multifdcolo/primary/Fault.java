package dev.multifdcolo.primary;

/**
 * A fault to inject into one COLO checkpoint ({@link ColoPrimary#checkpoint(Fault)}): where it
 * happens, which connection(s) it hits and whether they are reset (RST: SO_LINGER 0 + close) or
 * just stop sending (a stall: nothing closed, the thread parks until {@link ColoPrimary#kill()}).
 *
 * @param where    the point of the checkpoint transaction
 * @param channel  {@link #ALL_CHANNELS}, {@link #MAIN} or a multifd channel id (0-based)
 * @param bytes    {@link Where#AT_BYTE}: bytes of the checkpoint written on {@code channel} (all
 *                 channels together for {@link #ALL_CHANNELS}) before the cut
 * @param fraction {@link Where#LIVE_RAM}: share of the estimated live-state bytes (0..1) of
 *                 {@code channel} (one multifd channel: its share of the estimate);
 *                 {@link Where#IN_BLOB}: share of the device-state blob
 * @param stall    stop sending instead of resetting
 */
public record Fault(Where where, int channel, long bytes, double fraction, boolean stall) {

    /** Every connection of the session. */
    public static final int ALL_CHANNELS = -2;
    /** The main channel only. */
    public static final int MAIN = -1;

    /** Points of one checkpoint transaction (PROTOCOL.md §9.4). */
    public enum Where {
        /** Before CHECKPOINT_REQUEST: between checkpoints. */
        BEFORE_REQUEST,
        /** CHECKPOINT_REQUEST sent, before reading CHECKPOINT_REPLY. */
        AFTER_REQUEST,
        /** Inside the live RAM: {@code fraction} of the estimated live bytes after VMSTATE_SEND
         *  (if the live state is shorter, at its end, still before VMSTATE_SIZE). */
        LIVE_RAM,
        /** After the live state's EOF, before VMSTATE_SIZE. */
        BEFORE_SIZE,
        /** After VMSTATE_SIZE + be64, {@code fraction} of the way into the device-state blob. */
        IN_BLOB,
        /** Everything sent, before VMSTATE_RECEIVED arrived. */
        AFTER_BLOB,
        /** VMSTATE_RECEIVED read (the secondary is flushing), before VMSTATE_LOADED. */
        DURING_FLUSH,
        /** After {@code bytes} bytes of the checkpoint on {@code channel}; if the checkpoint is
         *  shorter, once everything was sent (as {@link #AFTER_BLOB}). */
        AT_BYTE
    }

    public Fault {
        if (where == null) {
            throw new IllegalArgumentException("where");
        }
        if (channel < ALL_CHANNELS) {
            throw new IllegalArgumentException("channel must be ALL_CHANNELS, MAIN or a multifd id");
        }
        if (bytes < 0 || fraction < 0 || fraction > 1) {
            throw new IllegalArgumentException("bytes >= 0 and 0 <= fraction <= 1");
        }
    }

    /** Resets every connection at {@code where}. */
    public static Fault cut(Where where) {
        return new Fault(where, ALL_CHANNELS, 0, 0.5, false);
    }

    /** Resets every connection after {@code bytes} bytes of the checkpoint (all channels counted). */
    public static Fault cutAtByte(long bytes) {
        return new Fault(Where.AT_BYTE, ALL_CHANNELS, bytes, 0, false);
    }

    /** Resets every connection {@code fraction} of the way into the live RAM. */
    public static Fault cutLiveRam(double fraction) {
        return new Fault(Where.LIVE_RAM, ALL_CHANNELS, 0, fraction, false);
    }

    /** Resets every connection {@code fraction} of the way into the device-state blob. */
    public static Fault cutInBlob(double fraction) {
        return new Fault(Where.IN_BLOB, ALL_CHANNELS, 0, fraction, false);
    }

    /** Resets only multifd channel {@code id}, after {@code bytes} of its checkpoint bytes. */
    public static Fault cutMultifdChannel(int id, long bytes) {
        if (id < 0) {
            throw new IllegalArgumentException("multifd channel id must be >= 0");
        }
        return new Fault(Where.AT_BYTE, id, bytes, 0, false);
    }

    /** Resets only the main channel after {@code bytes} of its checkpoint bytes. */
    public static Fault cutMainAtByte(long bytes) {
        return new Fault(Where.AT_BYTE, MAIN, bytes, 0, false);
    }

    /** Stops sending at {@code where} without closing anything. */
    public static Fault stall(Where where) {
        return new Fault(where, ALL_CHANNELS, 0, 0.5, true);
    }

    /** Same fault on other connection(s). */
    public Fault on(int channel) {
        return new Fault(where, channel, bytes, fraction, stall);
    }
}
