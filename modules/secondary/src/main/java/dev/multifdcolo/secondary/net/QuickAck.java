package dev.multifdcolo.secondary.net;

import io.netty.channel.Channel;
import io.netty.channel.ChannelOption;

/**
 * TCP_QUICKACK for Netty's native transports, found by name so this module does not depend on
 * either native jar: {@code EpollChannelOption#TCP_QUICKACK} or {@code IoUringChannelOption#TCP_QUICKACK}.
 * NIO has no such option (then nothing is done).
 */
final class QuickAck {
    private QuickAck() {}

    private static final String[] NAMES = {
            "io.netty.channel.uring.IoUringChannelOption#TCP_QUICKACK",
            "io.netty.channel.epoll.EpollChannelOption#TCP_QUICKACK"};

    @SuppressWarnings("unchecked")
    static ChannelOption<Boolean> option(Channel ch) {
        for (String n : NAMES) {
            if (ChannelOption.exists(n)) {
                ChannelOption<Boolean> o = (ChannelOption<Boolean>) (ChannelOption<?>) ChannelOption.valueOf(n);
                try {
                    if (ch.config().setOption(o, true)) {
                        return o;
                    }
                } catch (RuntimeException unsupported) {
                    // option of the other native transport
                }
            }
        }
        return null;
    }

    static void rearm(Channel ch, ChannelOption<Boolean> o) {
        try {
            ch.config().setOption(o, true);
        } catch (RuntimeException ignored) {
            // channel closing
        }
    }
}
