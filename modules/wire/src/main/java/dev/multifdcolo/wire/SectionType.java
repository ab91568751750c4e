package dev.multifdcolo.wire;

/** One-byte record types of the main stream (§7.4). */
public final class SectionType {
    private SectionType() {}

    public static final int EOF = 0x00;
    public static final int START = 0x01;
    public static final int PART = 0x02;
    public static final int END = 0x03;
    public static final int FULL = 0x04;
    public static final int SUBSECTION = 0x05;
    public static final int VMDESCRIPTION = 0x06;
    public static final int CONFIGURATION = 0x07;
    public static final int COMMAND = 0x08;
    public static final int FOOTER = 0x7e;
}
