package dev.troupe.coordinator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.troupe.device.DeviceActor;
import dev.troupe.device.DeviceInfo;
import dev.troupe.pipeline.dist.Planner;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** What the coordinator knows of the devices ({@link DeviceRoster}), without a cluster. */
class DeviceRosterTest {
  private static ActorSystem<Void> system;
  private static ActorRef<DeviceActor.Command> a0;
  private static ActorRef<DeviceActor.Command> a1;
  private static ActorRef<DeviceActor.Command> b0;

  private static final String NODE_A = "pekko://troupe@10.0.0.1:25520";
  private static final String NODE_B = "pekko://troupe@10.0.0.2:25520";

  @BeforeAll
  static void start() {
    system =
        ActorSystem.create(
            Behaviors.empty(),
            "roster",
            ConfigFactory.parseString("pekko.loglevel = WARNING")
                .withFallback(ConfigFactory.load()));
    a0 = system.systemActorOf(Behaviors.empty(), "a0", Props.empty());
    a1 = system.systemActorOf(Behaviors.empty(), "a1", Props.empty());
    b0 = system.systemActorOf(Behaviors.empty(), "b0", Props.empty());
  }

  @AfterAll
  static void stop() {
    system.terminate();
  }

  private static DeviceActor.Description on(String node, String id) {
    return new DeviceActor.Description(new DeviceInfo(id, DeviceInfo.Kind.CPU, 1L << 30, 2), node);
  }

  private static DeviceRoster threeDevices() {
    DeviceRoster r = new DeviceRoster();
    assertEquals(List.of(a0, a1, b0), r.listing(List.of(a0, a1, b0)));
    r.described(a0, on(NODE_A, "cpu:0"));
    r.described(a1, on(NODE_A, "cpu:1"));
    r.described(b0, on(NODE_B, "cpu:0"));
    return r;
  }

  @Test
  void devicesAreAskedOnceAndAgainWhenTheyDidNotAnswer() {
    DeviceRoster r = new DeviceRoster();
    assertEquals(List.of(a0, b0), r.listing(List.of(a0, b0)));
    assertEquals(List.of(), r.listing(List.of(a0, b0)), "asked already");
    r.described(a0, on(NODE_A, "cpu:0"));
    r.described(b0, null); // the ask timed out
    assertFalse(r.allDescribed(List.of(a0, b0)));
    assertEquals(List.of(b0), r.listing(List.of(a0, b0)), "asked again");
    assertEquals(List.of(a1), r.listing(List.of(a0, a1, b0)), "a device that joined");
  }

  @Test
  void lostDevicesAreLeftOutWhileListedAndForgottenAfter() {
    DeviceRoster r = threeDevices();
    r.lose(a1.path().toString());
    assertEquals(List.of(a0, b0), r.usable());
    r.listing(List.of(a0, b0)); // the receptionist caught up
    r.listing(List.of(a0, a1, b0)); // the same actor path listed again: a new node there
    r.described(a1, on(NODE_A, "cpu:1"));
    assertEquals(List.of(a0, a1, b0), r.usable());
  }

  @Test
  void aDrainedNodeIsLeftOutUntilItLeaves() {
    DeviceRoster r = threeDevices();
    assertEquals(Optional.of(NODE_B), r.node("10.0.0.2:25520"));
    assertEquals(Optional.of(NODE_A), r.node(" " + NODE_A + " "));
    assertEquals(Optional.empty(), r.node("10.0.0.3:25520"));
    r.drain(NODE_A);
    assertEquals(List.of(b0), r.usable());
    assertTrue(r.on(a1, NODE_A));
    r.listing(List.of(b0)); // node A left the cluster
    r.listing(List.of(a0, a1, b0)); // and came back
    r.described(a0, on(NODE_A, "cpu:0"));
    r.described(a1, on(NODE_A, "cpu:1"));
    assertEquals(List.of(a0, a1, b0), r.usable(), "a node that came back is not drained");
  }

  @Test
  void thePlannersChoiceMapsBackToActors() {
    DeviceRoster r = threeDevices();
    List<Planner.Device> offered = r.offered(List.of(a0, a1, b0));
    assertEquals("cpu:1", offered.get(1).id());
    assertEquals(NODE_B, offered.get(2).node());
    assertEquals(
        List.of(b0, a0), r.actorsOf(List.of(offered.get(2), offered.get(0)), List.of(a0, a1, b0)));
  }
}
