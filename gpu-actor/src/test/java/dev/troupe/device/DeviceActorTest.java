package dev.troupe.device;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class DeviceActorTest {
  private static org.apache.pekko.actor.ActorSystem system;

  @BeforeAll
  static void start() {
    system = org.apache.pekko.actor.ActorSystem.create("device-test");
  }

  @AfterAll
  static void stop() {
    system.terminate();
  }

  @Test
  void describesItsDevice() throws Exception {
    DeviceInfo info = new DeviceInfo("cpu:1", DeviceInfo.Kind.CPU, 1L << 30, 2);
    ActorRef<DeviceActor.Command> actor =
        Adapter.spawn(
            system, DeviceActor.create(info, "pekko://troupe@127.0.0.1:1"), "device-cpu-1");
    DeviceActor.Description d =
        AskPattern.<DeviceActor.Command, DeviceActor.Description>ask(
                actor,
                DeviceActor.Describe::new,
                Duration.ofSeconds(10),
                Adapter.toTyped(system).scheduler())
            .toCompletableFuture()
            .get(10, TimeUnit.SECONDS);
    assertEquals(new DeviceActor.Description(info, "pekko://troupe@127.0.0.1:1"), d);
  }
}
