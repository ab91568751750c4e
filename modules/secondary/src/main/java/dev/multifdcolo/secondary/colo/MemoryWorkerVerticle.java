package dev.multifdcolo.secondary.colo;

import dev.multifdcolo.memory.ColoFlush;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Future;
import io.vertx.core.ThreadingModel;
import io.vertx.core.VerticleBase;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.eventbus.MessageCodec;
import io.vertx.core.eventbus.MessageConsumer;


/**
 * A worker verticle doing the memcpy work of COLO off the event loops: the cache → guest copies
 * of precopy rounds and checkpoint flushes. Deployed as N instances consuming one address (one
 * per replica, see {@link WorkerPool}), so the event bus spreads jobs over N worker threads.
 */
public final class MemoryWorkerVerticle extends VerticleBase {
    /** Prefix of the replicas' worker addresses. */
    public static final String ADDRESS = "multifd-colo.memory";

    private final String address;
    private MessageConsumer<MemoryJob> consumer;

    MemoryWorkerVerticle(String address) {
        this.address = address;
    }

    /** Registers the identity codecs (once per Vert.x instance) and deploys {@code instances} workers on {@code address}. */
    static Future<String> deploy(Vertx vertx, String address, int instances) {
        synchronized (MemoryWorkerVerticle.class) {
            try {
                vertx.eventBus().registerDefaultCodec(MemoryJob.Flush.class, new Identity<>("mfc-flush"));
                vertx.eventBus().registerDefaultCodec(ColoFlush.Stats.class, new Identity<>("mfc-flush-stats"));
            } catch (IllegalStateException alreadyRegistered) {
                // another replica registered them on this Vert.x instance
            }
        }
        return vertx.deployVerticle(() -> new MemoryWorkerVerticle(address),
                new DeploymentOptions().setThreadingModel(ThreadingModel.WORKER).setInstances(instances));
    }

    @Override
    public Future<?> start() {
        consumer = vertx.eventBus().<MemoryJob>consumer(address, msg -> msg.reply(run(msg.body())));
        return consumer.completion();
    }

    static ColoFlush.Stats run(MemoryJob job) {
        return switch (job) {
            case MemoryJob.Flush f -> ColoFlush.flush(f.block(), f.fromWord(), f.toWord());
        };
    }

    @Override
    public Future<?> stop() {
        return consumer == null ? Future.succeededFuture() : consumer.unregister();
    }

    /** Passes the object itself between verticles of this JVM; never on the wire. */
    static final class Identity<T> implements MessageCodec<T, T> {
        private final String name;

        Identity(String name) {
            this.name = name;
        }

        @Override
        public void encodeToWire(Buffer buffer, T t) {
            throw new UnsupportedOperationException("local only");
        }

        @Override
        public T decodeFromWire(int pos, Buffer buffer) {
            throw new UnsupportedOperationException("local only");
        }

        @Override
        public T transform(T t) {
            return t;
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public byte systemCodecID() {
            return -1;
        }
    }
}
