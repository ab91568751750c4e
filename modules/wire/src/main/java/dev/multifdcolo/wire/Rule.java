package dev.multifdcolo.wire;

/**
 * Every reason we reject a migration stream. Each rule has a stable id (used in logs, metrics,
 * the CLI's one-line error and tests) and names the spec section it enforces.
 *
 * <p>A rejection ends one replica's incoming session; it never touches the last committed image.
 */
public enum Rule {
    // --- connections and channel classification (PROTOCOL.md §1) ---
    CHANNEL_MAGIC("§1.2", "connection starts with neither QEVM nor the multifd magic"),
    CHANNEL_EXTRA("§1.2", "connection beyond the main channel and the configured multifd channels"),
    CHANNEL_DUPLICATE_MAIN("§1.2", "a second main channel"),
    CHANNEL_CLOSED("§3.7", "a channel closed before the migration finished"),
    CHANNEL_TRUNCATED("§3.7", "a channel closed in the middle of a record"),
    CHANNEL_ORDER("§1.2", "with TLS, channels are classified by order: the first channel of a migration did not start"
            + " with QEVM, or a later one did"),
    TLS_HANDSHAKE("§1.2", "TLS handshake failed (no or untrusted client certificate, not TLS, timeout)"),

    // --- multifd hello (§2.2) ---
    HELLO_MAGIC("§2.2", "multifd hello has a bad magic"),
    HELLO_VERSION("§2.2", "multifd hello has an unsupported version"),
    HELLO_UUID("§2.2", "multifd hello UUID differs from the expected VM UUID"),
    HELLO_CHANNEL_ID("§2.2", "multifd hello channel id out of range"),
    HELLO_DUPLICATE_ID("§2.2", "multifd hello channel id already bound"),
    MULTIFD_NOT_ENABLED("§1.2", "a multifd channel connected but multifd is off for this replica"),

    // --- multifd RAM packet (§3.7, §3.4, §5) ---
    PACKET_MAGIC("§3.7", "multifd packet has a bad magic"),
    PACKET_VERSION("§3.7", "multifd packet has an unsupported version"),
    PACKET_PAGES_ALLOC("§3.7", "multifd packet pages_alloc larger than the page count per packet"),
    PACKET_NORMAL_PAGES("§3.7", "multifd packet normal_pages larger than pages_alloc"),
    PACKET_ZERO_PAGES("§3.7", "multifd packet zero_pages larger than pages_alloc - normal_pages"),
    PACKET_RAMBLOCK("§3.7", "multifd packet names an unknown RAMBlock"),
    PACKET_OFFSET_RANGE("§3.7", "multifd packet page offset outside its RAMBlock"),
    PACKET_OFFSET_ALIGN("§3.7", "multifd packet page offset not page aligned"),
    PACKET_COMPRESSION("§3.4", "multifd packet compression bits differ from the configured method"),
    PACKET_DEVICE_STATE("§5", "unexpected multifd device-state packet"),
    PACKET_PAYLOAD_SIZE("§6", "compressed payload size out of bounds"),
    DECOMPRESS_SIZE("§6", "compressed payload decodes to a size other than normal_pages x page size"),
    DECOMPRESS_CORRUPT("§6", "compressed payload is corrupt"),

    // --- main stream header and configuration (§7.2, §7.3) ---
    STREAM_MAGIC("§7.2", "not a migration stream (bad magic)"),
    STREAM_VERSION("§7.2", "unsupported migration stream version"),
    CONFIG_MISSING("§7.2", "the configuration section is missing"),
    CONFIG_MACHINE("§7.3", "machine type name invalid or not the expected one"),
    CONFIG_SUBSECTION("§7.3", "unknown or malformed configuration subsection"),
    CONFIG_PAGE_BITS("§7.3", "target page bits differ from ours"),
    CONFIG_CAPABILITY("§7.3", "the source requires a capability we do not have"),
    CONFIG_UUID("§7.3", "configuration UUID differs from the expected VM UUID"),

    // --- sections (§7.4) ---
    SECTION_TYPE("§7.4", "unknown section type"),
    SECTION_UNKNOWN_ID("§7.4", "PART/END for a section id that was never started"),
    SECTION_HANDLER("§7.4", "START for an iterative section we do not know"),
    SECTION_VERSION("§7.5", "RAM section version other than 4"),
    SECTION_FOOTER("§7.4", "section footer missing or naming another section"),
    SECTION_ORDER("§7.4", "section in a place the stream order does not allow"),

    // --- RAM records (§7.5) ---
    RAM_FLAGS("§7.5", "unknown combination of RAM flags"),
    RAM_UNSUPPORTED("§7.5", "RAM record kind we do not accept (FULL, XBZRLE, HOOK, COMPRESS_PAGE)"),
    RAM_CONTINUE("§7.5", "CONTINUE with no current RAMBlock"),
    RAM_BLOCK("§7.5", "RAM record names an unknown RAMBlock"),
    RAM_OFFSET("§7.5", "RAM page offset outside its RAMBlock"),
    RAM_BEFORE_SETUP("§7.5.1", "page record before the RAMBlock list"),
    MEM_SIZE_TOTAL("§7.5.1", "RAMBlock list does not add up to the announced total"),
    MEM_SIZE_LIMIT("§7.5.1", "announced RAM exceeds the configured maximum"),
    MEM_SIZE_BLOCK("§7.5.1", "RAMBlock with an empty name, a bad length or a duplicate name"),
    MEM_SIZE_REPEATED("§7.5.1", "a second RAMBlock list in one migration"),
    ZERO_FILL("§7.5", "ZERO record with a non-zero fill byte"),

    // --- commands (§7.6) ---
    COMMAND_UNKNOWN("§7.6", "unknown command id"),
    COMMAND_LENGTH("§7.6", "command length differs from its fixed length"),
    COMMAND_UNSUPPORTED("§7.6", "command for a feature we do not support (postcopy)"),

    // --- device state and vmdesc (§7.7) ---
    DEVICE_STATE_LIMIT("§7.7", "device state larger than the configured bound"),
    DEVICE_STATE_END("§7.7", "device state does not end with EOF followed by a valid VMDESCRIPTION"),
    VMDESC_LIMIT("§7.7", "VMDESCRIPTION longer than the configured bound"),

    // --- sync barrier (§4) ---
    SYNC_PROTOCOL("§4.3", "sync barrier broken (a channel closed or a SYNC without a barrier)"),

    // --- COLO (§9) ---
    COLO_MESSAGE("§9.2", "invalid COLO message value"),
    COLO_UNEXPECTED("§9.2", "COLO message not valid in the current state"),
    COLO_NOT_ENABLED("§9.5", "COLO command received but this replica is not configured for COLO"),
    COLO_VMSTATE_LIMIT("§9.4", "VMSTATE_SIZE larger than the configured bound"),
    COLO_HEARTBEAT("§9.9", "no checkpoint request within the heartbeat timeout"),

    // --- resource limits ---
    TIMEOUT("—", "a peer too slow: channel setup, stall (minimum rate) or checkpoint timeout"),
    CONNECTION_LIMIT("—", "more open connections on a replica port than max-connections"),
    REPLICA_FAILED_OVER("§9.9", "a new migration to a replica that failed over and refuses new migrations until reset");

    private final String section;
    private final String summary;

    Rule(String section, String summary) {
        this.section = section;
        this.summary = summary;
    }

    /** Stable identifier, e.g. {@code packet-offset-range}. */
    public String id() {
        return name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
    }

    /** The PROTOCOL.md section this rule implements. */
    public String section() {
        return section;
    }

    public String summary() {
        return summary;
    }
}
