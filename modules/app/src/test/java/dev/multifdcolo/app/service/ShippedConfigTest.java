package dev.multifdcolo.app.service;

import dev.multifdcolo.app.ServiceCommand;
import dev.multifdcolo.secondary.ReplicaConfig;
import io.vertx.config.ConfigRetriever;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** conf/multifd-colo.yaml, as shipped, reads through the config store and passes validation. */
class ShippedConfigTest {
    @Test
    void shippedYamlIsValid() {
        Vertx vertx = Vertx.vertx();
        try {
            JsonObject conf = ConfigRetriever.create(vertx,
                    ServiceCommand.retrieverOptions(Path.of("../../conf/multifd-colo.yaml"), 0)).getConfig().await();
            Endpoint metrics = ServiceMetrics.endpoint(conf);
            assertTrue(metrics.enabled() && metrics.loopback());
            assertEquals(ServiceMetrics.DEFAULT_PORT, metrics.port());
            ControlApi.Settings control = ControlApi.Settings.from(conf);
            assertTrue(control.endpoint().loopback());
            assertEquals(ControlApi.DEFAULT_PORT, control.endpoint().port());
            JsonArray replicas = conf.getJsonArray("replicas");
            assertTrue(replicas.size() >= 1);
            for (int i = 0; i < replicas.size(); i++) {
                ReplicaConfig.fromJson(replicas.getJsonObject(i));
            }
        } finally {
            vertx.close().await();
        }
    }
}
