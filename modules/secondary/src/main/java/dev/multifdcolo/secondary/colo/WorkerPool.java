package dev.multifdcolo.secondary.colo;

import io.vertx.core.Future;
import io.vertx.core.Vertx;

/**
 * One replica's flush workers: {@code size} instances of {@link MemoryWorkerVerticle} consuming
 * one event-bus address of their own. Resizing (a live config change of {@code flush-workers})
 * deploys a new pool and retires the old one, which is undeployed only when no flush uses it any
 * more — a flush in progress never loses a part to an unregistered consumer.
 */
public final class WorkerPool {
    private final Vertx vertx;
    private final String address;
    private final int size;
    private final String deploymentId;
    private int users;
    private boolean retired;

    private WorkerPool(Vertx vertx, String address, int size, String deploymentId) {
        this.vertx = vertx;
        this.address = address;
        this.size = size;
        this.deploymentId = deploymentId;
    }

    public static Future<WorkerPool> deploy(Vertx vertx, String address, int size) {
        return MemoryWorkerVerticle.deploy(vertx, address, size).map(id -> new WorkerPool(vertx, address, size, id));
    }

    public String address() {
        return address;
    }

    public int size() {
        return size;
    }

    public String deploymentId() {
        return deploymentId;
    }

    /** Pins the pool for one flush; false when it was retired (take the replica's current one). */
    public synchronized boolean acquire() {
        if (retired) {
            return false;
        }
        users++;
        return true;
    }

    public void release() {
        boolean undeploy;
        synchronized (this) {
            users--;
            undeploy = retired && users == 0;
        }
        if (undeploy) {
            vertx.undeploy(deploymentId);
        }
    }

    /** No new flush uses this pool; it is undeployed once the running ones end. */
    public void retire() {
        boolean undeploy;
        synchronized (this) {
            if (retired) {
                return;
            }
            retired = true;
            undeploy = users == 0;
        }
        if (undeploy) {
            vertx.undeploy(deploymentId);
        }
    }

    public synchronized boolean retired() {
        return retired;
    }
}
