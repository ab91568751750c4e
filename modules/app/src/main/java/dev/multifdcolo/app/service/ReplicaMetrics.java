package dev.multifdcolo.app.service;

import dev.multifdcolo.secondary.IncomingMigration;
import dev.multifdcolo.secondary.MigrationResult;
import dev.multifdcolo.secondary.MigrationStats;
import dev.multifdcolo.secondary.Replica;
import dev.multifdcolo.secondary.colo.Checkpoint;
import dev.multifdcolo.wire.Rule;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.ToLongFunction;

/**
 * The Micrometer series of one replica (tag {@code replica}). Counters are monotonic over the
 * replica's life: the totals of finished sessions plus the running session's live counters.
 * Every meter is removed again by {@link #close()} when the replica is removed from the config.
 */
public final class ReplicaMetrics implements AutoCloseable {
    /** Phase tag value when no migration is running. */
    public static final String IDLE = "IDLE";

    private final MeterRegistry registry;
    private final Replica replica;
    private final List<Meter> meters = new ArrayList<>();
    private final Timer transfer;
    private final Timer flush;
    private final Timer pause;
    private final DistributionSummary dirty;
    private final Counter checkpoints;
    private final Counter failovers;
    // totals of finished sessions; index 0 = main channel, 1.. = multifd channel id + 1
    private final long[] doneChannelBytes;
    private long doneNormal, doneZero, donePackets, doneSyncs;
    private volatile IncomingMigration live;

    public ReplicaMetrics(MeterRegistry registry, Replica replica) {
        this.registry = registry;
        this.replica = replica;
        Tags t = Tags.of("replica", replica.name());
        for (IncomingMigration.Phase p : IncomingMigration.Phase.values()) {
            String name = p.name();
            meters.add(Gauge.builder("multifd.colo.replica.state", this, m -> m.phase().equals(name) ? 1 : 0)
                    .description("1 for the replica's current phase (IDLE when no migration runs)")
                    .tags(t.and("phase", name)).register(registry));
        }
        meters.add(Gauge.builder("multifd.colo.replica.state", this, m -> m.phase().equals(IDLE) ? 1 : 0)
                .tags(t.and("phase", IDLE)).register(registry));
        meters.add(Gauge.builder("multifd.colo.replica.epoch", this, m -> m.epoch())
                .description("last committed COLO checkpoint epoch (0 = precopy image, -1 = none)")
                .tags(t).register(registry));
        int channels = replica.config().multifdChannels();
        doneChannelBytes = new long[channels + 1];
        for (int c = -1; c < channels; c++) {
            int ch = c;
            meters.add(FunctionCounter.builder("multifd.colo.received.bytes", this, m -> m.channelBytes(ch))
                    .description("bytes received per channel (main or multifd channel id)").baseUnit("bytes")
                    .tags(t.and("channel", ch < 0 ? "main" : Integer.toString(ch))).register(registry));
        }
        meters.add(counter("multifd.colo.received.pages", t.and("type", "normal"), "pages received",
                s -> s.normalPages.sum(), () -> doneNormal));
        meters.add(counter("multifd.colo.received.pages", t.and("type", "zero"), "pages received",
                s -> s.zeroPages.sum(), () -> doneZero));
        meters.add(counter("multifd.colo.received.packets", t, "multifd packets received",
                s -> s.packets.sum(), () -> donePackets));
        meters.add(counter("multifd.colo.syncs", t, "multifd sync barriers passed",
                s -> s.syncs.sum(), () -> doneSyncs));
        transfer = timer("multifd.colo.checkpoint.transfer", t, "checkpoint RAM transfer (VMSTATE_SEND to EOF)");
        flush = timer("multifd.colo.checkpoint.flush", t, "checkpoint flush cache -> guest");
        pause = timer("multifd.colo.checkpoint.pause", t, "CHECKPOINT_REQUEST to VMSTATE_LOADED");
        dirty = DistributionSummary.builder("multifd.colo.checkpoint.dirty.pages").tags(t)
                .description("dirty pages flushed per checkpoint").baseUnit("pages")
                .publishPercentiles(0.5, 0.99).publishPercentileHistogram().register(registry);
        meters.add(dirty);
        quantiles("multifd.colo.checkpoint.dirty.pages.quantile", dirty, t, null, null);
        checkpoints = Counter.builder("multifd.colo.checkpoints").tags(t).description("committed checkpoints")
                .register(registry);
        meters.add(checkpoints);
        failovers = Counter.builder("multifd.colo.failovers").tags(t).description("COLO failovers").register(registry);
        meters.add(failovers);
        meters.add(FunctionCounter.builder("multifd.colo.migrations", replica, Replica::completed)
                .tags(t.and("outcome", "completed")).description("incoming migrations by outcome").register(registry));
        meters.add(FunctionCounter.builder("multifd.colo.migrations", replica, Replica::failed)
                .tags(t.and("outcome", "failed")).description("incoming migrations by outcome").register(registry));
        for (Rule r : Rule.values()) {
            meters.add(FunctionCounter.builder("multifd.colo.rejections", replica, rep -> rep.rejections(r))
                    .tags(t.and("rule", r.id())).description("connections or migrations refused, by rule")
                    .register(registry));
        }
    }

    private Timer timer(String name, Tags t, String description) {
        Timer tm = Timer.builder(name).tags(t).description(description).publishPercentiles(0.5, 0.99)
                .publishPercentileHistogram().minimumExpectedValue(Duration.ofNanos(100_000))
                .maximumExpectedValue(Duration.ofSeconds(30)).register(registry);
        meters.add(tm);
        quantiles(name + ".quantile", tm, t, "seconds", TimeUnit.SECONDS);
        return tm;
    }

    /**
     * p50 and p99 over Micrometer's sliding window (2 minutes) as gauges tagged {@code quantile}:
     * the Prometheus registry exports the buckets of a percentile histogram but not the
     * client-side percentiles, and dashboards want both.
     */
    private void quantiles(String name, io.micrometer.core.instrument.distribution.HistogramSupport h, Tags t,
                           String unit, TimeUnit timeUnit) {
        for (double q : new double[]{0.5, 0.99}) {
            meters.add(Gauge.builder(name, h, x -> percentile(x, q, timeUnit)).tags(t.and("quantile", Double.toString(q)))
                    .baseUnit(unit).description(h.getId().getDescription() + ", p" + Math.round(q * 100)
                            + " over the last 2 minutes").register(registry));
        }
    }

    private static double percentile(io.micrometer.core.instrument.distribution.HistogramSupport h, double q,
                                     TimeUnit unit) {
        for (var v : h.takeSnapshot().percentileValues()) {
            if (v.percentile() == q) {
                return unit == null ? v.value() : v.value(unit);
            }
        }
        return Double.NaN;
    }

    private FunctionCounter counter(String name, Tags t, String description, ToLongFunction<MigrationStats> live,
                                    java.util.function.LongSupplier done) {
        return FunctionCounter.builder(name, this, m -> m.sum(live, done)).tags(t).description(description)
                .register(registry);
    }

    private synchronized double sum(ToLongFunction<MigrationStats> f, java.util.function.LongSupplier done) {
        return done.getAsLong() + (live == null ? 0 : f.applyAsLong(live.stats()));
    }

    private synchronized double channelBytes(int channel) {
        long v = doneChannelBytes[channel + 1];
        if (live != null && channel < live.stats().channels()) {
            v += live.stats().channelBytes(channel);
        }
        return v;
    }

    /** Phase of the running session, or {@link #IDLE}. */
    public String phase() {
        IncomingMigration s = replica.current();
        return s == null || s.finished() ? IDLE : s.phase().name();
    }

    private double epoch() {
        IncomingMigration s = live;
        return s == null ? lastEpoch : s.epoch();
    }

    private volatile long lastEpoch = -1;

    /** Follows a new session: its counters, its commits, and how it ends. */
    public void onSession(IncomingMigration s) {
        synchronized (this) {
            live = s;
        }
        s.onCommit(this::onCommit);
        s.outcome().onComplete(ar -> {
            if (ar.succeeded()) {
                MigrationResult r = ar.result();
                if (r.colo() != null && r.colo().failoverReason() != null) {
                    failovers.increment();
                }
            }
            synchronized (this) {
                MigrationStats st = s.stats();
                for (int c = -1; c < st.channels() && c + 1 < doneChannelBytes.length; c++) {
                    doneChannelBytes[c + 1] += st.channelBytes(c);
                }
                doneNormal += st.normalPages.sum();
                doneZero += st.zeroPages.sum();
                donePackets += st.packets.sum();
                doneSyncs += st.syncs.sum();
                lastEpoch = s.epoch();
                if (live == s) {
                    live = null;
                }
            }
        });
    }

    private void onCommit(Checkpoint cp) {
        if (cp.epoch() == 0) {
            return;  // the precopy image: no checkpoint transfer
        }
        checkpoints.increment();
        transfer.record(cp.transferNanos(), TimeUnit.NANOSECONDS);
        flush.record(cp.flushNanos(), TimeUnit.NANOSECONDS);
        pause.record(cp.pauseNanos(), TimeUnit.NANOSECONDS);
        dirty.record(cp.dirtyPages());
    }

    @Override
    public void close() {
        meters.forEach(registry::remove);
        meters.clear();
    }
}
