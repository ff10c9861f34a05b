package dev.troupe.device;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.troupe.persistence.KryoSerializer;
import dev.troupe.pipeline.train.QuantCheck;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.serialization.Serializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The device actors' newer cluster messages go through the Kryo serializer with the registrations
 * of this module's reference.conf (an unregistered class would be refused by name).
 */
class DeviceMessagesSerializationTest {
  private static ActorSystem<Void> system;

  @BeforeAll
  static void start() {
    system = ActorSystem.create(Behaviors.empty(), "device-messages");
  }

  @AfterAll
  static void stop() throws Exception {
    system.terminate();
    system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
  }

  private static Object roundTrip(Object o) throws Exception {
    var classic = (ExtendedActorSystem) Adapter.toClassic(system);
    Serializer s = SerializationExtension.get(classic).findSerializerFor(o);
    assertEquals(KryoSerializer.class, s.getClass(), o.getClass().getName());
    return s.fromBinary(s.toBinary(o), o.getClass());
  }

  @Test
  void quantizationCheckAndRecallMessagesRoundTrip() throws Exception {
    QuantCheck.Measure m = new QuantCheck.Measure(3, "o_proj", "nf4", 2.0, 0.5, Double.NaN, 64, 32);
    var measured =
        new RankProtocol.QuantMeasured(
            "run-1", 2, 4, new java.util.ArrayList<>(List.of(m)), 12.5, 40, 4096);
    assertEquals(measured, roundTrip(measured));
    var apply = new RankProtocol.QuantApply("run-1", 4, "{\"layers.0.q_proj\":{}}");
    assertEquals(apply, roundTrip(apply));
    assertEquals(
        new RankProtocol.QuantMeasure("run-1", 4),
        roundTrip(new RankProtocol.QuantMeasure("run-1", 4)));
    var applied = new RankProtocol.QuantApplied("run-1", 2, 4, 1.5, 40, 8192);
    assertEquals(applied, roundTrip(applied));
    var copy = new RankProtocol.Copy(0, 2, 7, Map.of(), 7, 1.0, 0, "");
    var recalled =
        new DeviceActor.Recalled(new RankProtocol.Copies("job-1", "cpu-0@here", List.of(copy)));
    assertEquals(recalled, roundTrip(recalled));
  }
}
