package dev.multifdcolo.primary;

/**
 * What an injected fault did to checkpoint {@code epoch}, and so which image a correct secondary
 * may keep: nothing of a checkpoint can be committed before all its bytes arrived, and once the
 * secondary said VMSTATE_RECEIVED it flushes and commits before failing over (§9.9).
 *
 * @param epoch          the checkpoint the fault hit (the secondary's last commit was epoch - 1)
 * @param fault          the fault
 * @param stage          where the transaction was when it fired (null: it never fired, the
 *                       checkpoint failed on its own)
 * @param bytesCounted   bytes counted on the faulted channel(s) when it fired
 * @param complete       every byte of the checkpoint had been written when it fired (for a cut
 *                       of one multifd channel: that channel had written its whole part, SYNC
 *                       included, and the others go on), so the secondary may commit it
 * @param error          the error the checkpoint ended with (one line), or null
 * @param digest         the primary's memory digest with this checkpoint's writes (epoch)
 * @param previousDigest the primary's digest of the last committed checkpoint (epoch - 1)
 */
public record FaultReport(long epoch, Fault fault, Stage stage, long bytesCounted, boolean complete, String error,
                          String digest, String previousDigest) {

    /** Steps of one checkpoint transaction, in order. */
    public enum Stage {
        /** Before CHECKPOINT_REQUEST. */
        IDLE,
        /** REQUEST written, waiting for REPLY. */
        REQUEST,
        /** VMSTATE_SEND and the live state (RAM, EOF) being written. */
        LIVE,
        /** VMSTATE_SIZE + be64 + device-state blob being written. */
        BLOB,
        /** Every byte of the checkpoint written, VMSTATE_RECEIVED not yet read. */
        SENT,
        /** VMSTATE_RECEIVED read, VMSTATE_LOADED not yet. */
        RECEIVED,
        /** VMSTATE_LOADED read: the checkpoint is committed. */
        LOADED
    }

    /** The lowest epoch a correct secondary may report after this fault. */
    public long minEpoch() {
        return stage != null && stage.compareTo(Stage.RECEIVED) >= 0 ? epoch : epoch - 1;
    }

    /** The highest epoch a correct secondary may report after this fault. */
    public long maxEpoch() {
        return stage != null && complete ? epoch : epoch - 1;
    }

    /** The primary's digest for {@code e} (this checkpoint or the previous one). */
    public String digestOf(long e) {
        if (e == epoch) {
            return digest;
        }
        if (e == epoch - 1) {
            return previousDigest;
        }
        throw new IllegalArgumentException("epoch " + e + " is neither " + epoch + " nor " + (epoch - 1));
    }
}
