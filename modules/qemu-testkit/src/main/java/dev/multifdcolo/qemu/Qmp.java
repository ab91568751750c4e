package dev.multifdcolo.qemu;

import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Synchronous QMP client over a unix domain socket.
 *
 * <p>A reader thread receives every message: answers are matched to commands by {@code id}, and
 * asynchronous events are kept (in arrival order) both in a history ({@link #events()}) and in a
 * queue that {@link #awaitEvent} consumes from. Commands may be issued from several threads.
 */
public final class Qmp implements AutoCloseable {

    /** Migration states after which nothing changes any more on its own. */
    private static final Set<String> MIGRATION_DEAD_ENDS = Set.of("failed", "cancelled");

    private final SocketChannel channel;
    private final Path workDir;
    private final String name;
    private final Thread reader;
    private final Object writeLock = new Object();
    private final AtomicLong ids = new AtomicLong();
    private final AtomicLong files = new AtomicLong();
    private final ConcurrentSkipListMap<Long, CompletableFuture<JsonObject>> pending = new ConcurrentSkipListMap<>();
    private final CompletableFuture<JsonObject> greeting = new CompletableFuture<>();

    private final ReentrantLock eventLock = new ReentrantLock();
    private final Condition eventArrived = eventLock.newCondition();
    private final List<JsonObject> history = new ArrayList<>();
    private final Deque<JsonObject> unconsumed = new ArrayDeque<>();

    private volatile Duration commandTimeout = Duration.ofSeconds(60);
    private volatile IOException disconnected;

    private Qmp(SocketChannel channel, Path workDir, String name) {
        this.channel = channel;
        this.workDir = workDir;
        this.name = name;
        this.reader = Thread.ofPlatform().daemon().name("qmp-reader-" + name).unstarted(this::readLoop);
    }

    /**
     * Connects to a QMP socket (retrying until it exists and accepts), reads the greeting and
     * negotiates capabilities.
     *
     * @param workDir directory QEMU may write files into and we may read back ({@link #pmemsave})
     */
    public static Qmp connect(Path socket, Path workDir, Duration timeout) throws IOException {
        return connect(socket, workDir, timeout, () -> true, socket.getFileName().toString());
    }

    static Qmp connect(Path socket, Path workDir, Duration timeout,
                       java.util.function.BooleanSupplier keepTrying, String name) throws IOException {
        long start = System.nanoTime();
        SocketChannel ch = UnixSockets.connect(socket, timeout, keepTrying);
        Qmp qmp = new Qmp(ch, workDir, name);
        qmp.reader.start();
        try {
            Duration left = timeout.minusNanos(System.nanoTime() - start);
            qmp.greeting.get(Math.max(1000, left.toMillis()), TimeUnit.MILLISECONDS);
            qmp.execute("qmp_capabilities");
            return qmp;
        } catch (TimeoutException e) {
            qmp.close();
            throw new QemuTimeoutException("no QMP greeting on " + socket + " within " + timeout.toMillis() + " ms");
        } catch (ExecutionException e) {
            qmp.close();
            throw new IOException("QMP connection on " + socket + " failed", e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            qmp.close();
            throw new IOException("interrupted", e);
        } catch (RuntimeException e) {
            qmp.close();
            throw e;
        }
    }

    /** The greeting QEMU sent ({@code {"QMP": {"version": ..., "capabilities": ...}}}). */
    public JsonObject greeting() {
        return greeting.getNow(new JsonObject()).copy();
    }

    /** How long a command may take before {@link QemuTimeoutException}; default 60 s. */
    public Duration commandTimeout() {
        return commandTimeout;
    }

    public void setCommandTimeout(Duration timeout) {
        this.commandTimeout = Objects.requireNonNull(timeout);
    }

    // ---------------------------------------------------------------- commands

    /**
     * Executes a command and returns its raw {@code return} value: a {@link JsonObject},
     * {@link JsonArray}, String, Number or Boolean.
     *
     * @param arguments may be null or empty (then no {@code arguments} member is sent)
     * @throws QmpException          QEMU answered with an error
     * @throws QemuTimeoutException  no answer within {@link #commandTimeout()}
     * @throws UncheckedIOException  the connection is (or went) down
     */
    public Object call(String command, JsonObject arguments) {
        Objects.requireNonNull(command, "command");
        long id = ids.incrementAndGet();
        CompletableFuture<JsonObject> answer = new CompletableFuture<>();
        pending.put(id, answer);
        JsonObject request = new JsonObject().put("execute", command);
        if (arguments != null && !arguments.isEmpty()) {
            request.put("arguments", arguments);
        }
        request.put("id", id);
        try {
            IOException down = disconnected;
            if (down != null) {
                throw new UncheckedIOException("QMP connection " + name + " is closed", down);
            }
            send(request.encode());
            JsonObject response = answer.get(commandTimeout.toMillis(), TimeUnit.MILLISECONDS);
            JsonObject error = response.getJsonObject("error");
            if (error != null) {
                throw new QmpException(command, error.getString("class"), error.getString("desc"));
            }
            return response.getValue("return");
        } catch (TimeoutException e) {
            throw new QemuTimeoutException("QMP '" + command + "' on " + name + " got no answer within "
                    + commandTimeout.toMillis() + " ms");
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            throw new UncheckedIOException("QMP '" + command + "' on " + name + ": connection lost",
                    cause instanceof IOException io ? io : new IOException(cause));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new UncheckedIOException(new IOException("interrupted during QMP '" + command + "'", e));
        } catch (IOException e) {
            throw new UncheckedIOException("QMP '" + command + "' on " + name + ": send failed", e);
        } finally {
            pending.remove(id);
        }
    }

    /** Executes a command without arguments; see {@link #execute(String, JsonObject)}. */
    public JsonObject execute(String command) {
        return execute(command, null);
    }

    /**
     * Executes a command whose {@code return} is an object (most are; {@code {}} for "nothing").
     * Use {@link #call} for commands that return arrays or scalars.
     */
    public JsonObject execute(String command, JsonObject arguments) {
        Object value = call(command, arguments);
        if (value == null) {
            return new JsonObject();
        }
        if (value instanceof JsonObject object) {
            return object;
        }
        throw new IllegalStateException("QMP '" + command + "' returned " + value.getClass().getSimpleName()
                + " (" + value + "), not an object; use call()");
    }

    private void send(String json) throws IOException {
        ByteBuffer bytes = ByteBuffer.wrap((json + "\n").getBytes(StandardCharsets.UTF_8));
        synchronized (writeLock) {
            while (bytes.hasRemaining()) {
                channel.write(bytes);
            }
        }
    }

    // ---------------------------------------------------------------- events

    /** Every event received so far (oldest first), whether consumed by {@link #awaitEvent} or not. */
    public List<JsonObject> events() {
        eventLock.lock();
        try {
            return history.stream().map(JsonObject::copy).toList();
        } finally {
            eventLock.unlock();
        }
    }

    /**
     * Waits for the oldest not yet consumed event called {@code name} (which may already have
     * arrived), consumes it and returns it whole ({@code event}, {@code data}, {@code timestamp}).
     *
     * @throws QemuTimeoutException none arrived in time
     */
    public JsonObject awaitEvent(String name, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        eventLock.lock();
        try {
            while (true) {
                Optional<JsonObject> found = takeEvent(name);
                if (found.isPresent()) {
                    return found.get();
                }
                if (disconnected != null) {
                    throw new UncheckedIOException("QMP connection " + this.name + " closed while waiting for event "
                            + name, disconnected);
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new QemuTimeoutException("no QMP event " + name + " on " + this.name + " within "
                            + timeout.toMillis() + " ms; events seen: "
                            + history.stream().map(e -> e.getString("event")).toList());
                }
                eventArrived.awaitNanos(left);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new QemuTimeoutException("interrupted while waiting for QMP event " + name);
        } finally {
            eventLock.unlock();
        }
    }

    /** Consumes and returns the oldest not yet consumed event called {@code name}, if there is one; never waits. */
    public Optional<JsonObject> pollEvent(String name) {
        eventLock.lock();
        try {
            return takeEvent(name);
        } finally {
            eventLock.unlock();
        }
    }

    /** Marks every event received so far as consumed (the history is kept). */
    public void clearEvents() {
        eventLock.lock();
        try {
            unconsumed.clear();
        } finally {
            eventLock.unlock();
        }
    }

    private Optional<JsonObject> takeEvent(String name) {
        for (Iterator<JsonObject> it = unconsumed.iterator(); it.hasNext(); ) {
            JsonObject event = it.next();
            if (name.equals(event.getString("event"))) {
                it.remove();
                return Optional.of(event.copy());
            }
        }
        return Optional.empty();
    }

    // ---------------------------------------------------------------- helpers

    /** {@code migrate-set-capabilities}, e.g. {@code Map.of("multifd", true)}. */
    public void setCapabilities(Map<String, Boolean> capabilities) {
        JsonArray list = new JsonArray();
        capabilities.forEach((capability, state) ->
                list.add(new JsonObject().put("capability", capability).put("state", state)));
        execute("migrate-set-capabilities", new JsonObject().put("capabilities", list));
    }

    /** {@code migrate-set-parameters} with the given members, e.g. {@code {"multifd-channels": 2}}. */
    public void setParameters(JsonObject parameters) {
        execute("migrate-set-parameters", parameters);
    }

    /** Starts an outgoing migration, e.g. {@code migrate("tcp:127.0.0.1:4444")}. */
    public void migrate(String uri) {
        execute("migrate", new JsonObject().put("uri", uri));
    }

    /** Starts listening for an incoming migration (QEMU must run with {@code -incoming defer}). */
    public void migrateIncoming(String uri) {
        execute("migrate-incoming", new JsonObject().put("uri", uri));
    }

    /** {@code query-migrate}. */
    public JsonObject queryMigrate() {
        return execute("query-migrate");
    }

    /**
     * The TCP port an incoming migration listens on (after {@code migrateIncoming("tcp:HOST:0")}),
     * taken from {@code query-migrate}'s {@code socket-address}.
     */
    public int incomingPort() {
        JsonObject info = queryMigrate();
        JsonArray addresses = info.getJsonArray("socket-address");
        if (addresses != null) {
            for (int i = 0; i < addresses.size(); i++) {
                JsonObject address = addresses.getJsonObject(i);
                if ("inet".equals(address.getString("type")) && address.getValue("port") != null) {
                    return Integer.parseInt(String.valueOf(address.getValue("port")));
                }
            }
        }
        throw new IllegalStateException("query-migrate shows no listening TCP socket: " + info.encode());
    }

    /**
     * Polls {@code query-migrate} until its status is one of {@code wanted}, and returns that answer.
     *
     * @throws MigrationException the migration ended in {@code failed}/{@code cancelled} (unless wanted),
     *                            or the timeout expired; it carries the last status and error-desc
     */
    public JsonObject awaitMigrationStatus(Set<String> wanted, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        long pauseMillis = 2;
        while (true) {
            JsonObject info = queryMigrate();
            String status = info.getString("status", "none");
            if (wanted.contains(status)) {
                return info;
            }
            String desc = info.getString("error-desc");
            if (MIGRATION_DEAD_ENDS.contains(status)) {
                throw new MigrationException("migration on " + name + " ended in '" + status + "' instead of "
                        + wanted + (desc == null ? "" : ": " + desc), status, desc, false, info);
            }
            if (System.nanoTime() - deadline > 0) {
                throw new MigrationException("migration on " + name + " did not reach " + wanted + " within "
                        + timeout.toMillis() + " ms; last status '" + status + "'"
                        + (desc == null ? "" : ", error-desc: " + desc), status, desc, true, info);
            }
            try {
                Thread.sleep(pauseMillis);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new MigrationException("interrupted while waiting for " + wanted, status, desc, false, info);
            }
            pauseMillis = Math.min(25, pauseMillis * 2);
        }
    }

    /** Runs a human monitor (HMP) command line and returns its output text. */
    public String hmp(String commandLine) {
        Object out = call("human-monitor-command", new JsonObject().put("command-line", commandLine));
        return out == null ? "" : out.toString();
    }

    /**
     * Reads guest-physical memory: QEMU writes it to a file in the work directory
     * ({@code pmemsave}), which is read back and deleted.
     */
    public byte[] pmemsave(long addr, long size) {
        if (size < 0 || size > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("size out of range: " + size);
        }
        Path file = workDir.resolve("pmemsave-" + files.incrementAndGet() + ".bin").toAbsolutePath();
        try {
            execute("pmemsave", new JsonObject().put("val", addr).put("size", size).put("filename", file.toString()));
            byte[] data = Files.readAllBytes(file);
            if (data.length != size) {
                throw new IllegalStateException("pmemsave wrote " + data.length + " bytes, expected " + size);
            }
            return data;
        } catch (IOException e) {
            throw new UncheckedIOException("reading back " + file, e);
        } finally {
            try {
                Files.deleteIfExists(file);
            } catch (IOException ignored) {
                // the work directory is removed later anyway
            }
        }
    }

    /** Pauses the VM ({@code stop}). */
    public void stop() {
        execute("stop");
    }

    /** Resumes the VM ({@code cont}). */
    public void cont() {
        execute("cont");
    }

    /** {@code query-status}: {@code {"status": "paused", "running": false, ...}}. */
    public JsonObject queryStatus() {
        return execute("query-status");
    }

    /**
     * Asks QEMU to exit ({@code quit}). QEMU may close the connection before or right after it
     * answers; both count as success.
     */
    public void quit() {
        try {
            call("quit", null);
        } catch (UncheckedIOException e) {
            // the connection went away because QEMU quit: that is the point
        }
    }

    /** True until the connection is closed (by us, or by QEMU exiting). */
    public boolean isConnected() {
        return disconnected == null && channel.isOpen();
    }

    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException ignored) {
            // nothing to do
        }
        if (Thread.currentThread() != reader) {
            try {
                reader.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        markDisconnected(new IOException("closed by the client"));
    }

    @Override
    public String toString() {
        return "Qmp[" + name + "]";
    }

    // ---------------------------------------------------------------- reader

    private void readLoop() {
        ByteBuffer buffer = ByteBuffer.allocate(64 * 1024);
        ByteArrayOutputStream line = new ByteArrayOutputStream(4096);
        IOException cause = null;
        try {
            while (channel.read(buffer) >= 0) {
                buffer.flip();
                while (buffer.hasRemaining()) {
                    byte b = buffer.get();
                    if (b == '\n') {
                        dispatch(line.toString(StandardCharsets.UTF_8));
                        line.reset();
                    } else {
                        line.write(b);
                    }
                }
                buffer.clear();
            }
            cause = new IOException("QEMU closed the QMP connection");
        } catch (IOException e) {
            cause = e;
        } catch (RuntimeException | Error e) {
            cause = new IOException("QMP reader of " + name + " failed: " + e, e);
            throw e;
        } finally {
            markDisconnected(cause == null ? new IOException("QMP reader stopped") : cause);
        }
    }

    private void dispatch(String text) {
        if (text.isBlank()) {
            return;
        }
        JsonObject message;
        try {
            message = new JsonObject(text);
        } catch (DecodeException | ClassCastException e) {
            return; // not a QMP object; nothing sensible to do with it
        }
        if (message.containsKey("QMP")) {
            greeting.complete(message);
        } else if (message.containsKey("event")) {
            eventLock.lock();
            try {
                history.add(message);
                unconsumed.add(message);
                eventArrived.signalAll();
            } finally {
                eventLock.unlock();
            }
        } else if (message.containsKey("return") || message.containsKey("error")) {
            CompletableFuture<JsonObject> target = null;
            if (message.getValue("id") instanceof Number n) {
                target = pending.get(n.longValue());
            } else {
                // an answer without id (QEMU could not parse the request): give it to the oldest command
                Map.Entry<Long, CompletableFuture<JsonObject>> oldest = pending.firstEntry();
                target = oldest == null ? null : oldest.getValue();
            }
            if (target != null) {
                target.complete(message);
            }
        }
    }

    private void markDisconnected(IOException cause) {
        if (disconnected == null) {
            disconnected = cause;
        }
        greeting.completeExceptionally(cause);
        pending.values().forEach(f -> f.completeExceptionally(cause));
        eventLock.lock();
        try {
            eventArrived.signalAll();
        } finally {
            eventLock.unlock();
        }
    }
}
