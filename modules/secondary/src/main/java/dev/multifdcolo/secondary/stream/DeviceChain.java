package dev.multifdcolo.secondary.stream;

import dev.multifdcolo.wire.SectionType;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.nio.charset.StandardCharsets;

/**
 * Checks that verbatim device sections match a VMDESCRIPTION (§7.7): the JSON lists the devices
 * in section order with name, instance_id and version; each FULL section in the bytes must carry
 * exactly those, and each must be closed by a footer repeating its section id, followed by the
 * next device's header (or, for the last one, by the EOF byte at {@code end}).
 */
final class DeviceChain {
    private DeviceChain() {}

    /**
     * @param dev  kept bytes, starting at the first device section
     * @param end  index of the EOF byte that ends the device sections
     * @param json the VMDESCRIPTION, or null when the source sent none (then only the first header is checked)
     */
    static boolean walks(byte[] dev, int end, String json) {
        if (json == null) {
            return end == 0 || endsWithAFooter(dev, end);
        }
        JsonArray devices;
        try {
            devices = new JsonObject(json).getJsonArray("devices");
        } catch (DecodeException | ClassCastException e) {
            return false;
        }
        if (devices == null) {
            return false;
        }
        int pos = 0;
        for (int i = 0; i < devices.size(); i++) {
            JsonObject d = devices.getJsonObject(i);
            int body = header(dev, pos, end, d);
            if (body < 0) {
                return false;
            }
            int id = be32(dev, pos + 1);
            JsonObject next = i + 1 < devices.size() ? devices.getJsonObject(i + 1) : null;
            int found = -1;
            for (int q = body; q + 5 <= end; q++) {
                if (dev[q] == (byte) SectionType.FOOTER && be32(dev, q + 1) == id
                        && (next == null ? q + 5 == end : header(dev, q + 5, end, next) >= 0)) {
                    found = q + 5;
                    break;
                }
            }
            if (found < 0) {
                return false;
            }
            pos = found;
        }
        return pos == end;
    }

    /**
     * Without a VMDESCRIPTION the sections cannot be walked, but the bytes before the EOF must at
     * least end with a footer that repeats the id of a FULL section header before it. A stream cut
     * inside a section's payload usually ends in some 0 byte (padding, zero fields); that alone
     * must not pass for the EOF of a complete stream.
     */
    private static boolean endsWithAFooter(byte[] dev, int end) {
        if (end < 15 + 5 || dev[0] != SectionType.FULL || dev[end - 5] != (byte) SectionType.FOOTER) {
            return false;
        }
        int id = be32(dev, end - 4);
        for (int p = 0; p + 15 <= end - 5; p++) {
            int n = dev[p + 5] & 0xff;
            if (dev[p] == SectionType.FULL && be32(dev, p + 1) == id && n > 0 && p + 6 + n + 8 <= end - 5) {
                return true;
            }
        }
        return false;
    }

    /** @return the index just past a FULL header matching {@code d} at {@code pos}, or -1 */
    private static int header(byte[] dev, int pos, int end, JsonObject d) {
        try {
            String name = d.getString("name");
            Integer inst = d.getInteger("instance_id");
            Integer version = d.getInteger("version");
            if (name == null || inst == null || version == null) {
                return -1;
            }
            byte[] n = name.getBytes(StandardCharsets.ISO_8859_1);
            int tail = pos + 1 + 4 + 1 + n.length;
            if (tail + 8 > end || dev[pos] != SectionType.FULL || (dev[pos + 5] & 0xff) != n.length) {
                return -1;
            }
            for (int k = 0; k < n.length; k++) {
                if (dev[pos + 6 + k] != n[k]) {
                    return -1;
                }
            }
            if (be32(dev, tail) != inst || be32(dev, tail + 4) != version) {
                return -1;
            }
            return tail + 8;
        } catch (ClassCastException e) {
            return -1;
        }
    }

    private static int be32(byte[] b, int i) {
        return ((b[i] & 0xff) << 24) | ((b[i + 1] & 0xff) << 16) | ((b[i + 2] & 0xff) << 8) | (b[i + 3] & 0xff);
    }
}
