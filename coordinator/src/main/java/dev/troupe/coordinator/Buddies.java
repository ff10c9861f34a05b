package dev.troupe.coordinator;

import dev.troupe.device.DeviceActor;
import dev.troupe.pipeline.dist.Plan;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * Where copies of a run's trainable state are kept besides the device that makes them: a buddy
 * device on another node, so that losing any one node loses no committed step. The same choice for
 * a run on one device and for the first rank of each stage of a run over several.
 */
final class Buddies {
  private Buddies() {}

  /**
   * A device on another node than {@code of} to keep copies of its state (its job's or its
   * stage's): the next one after it in the cluster's device order; none where every device is on
   * its node.
   */
  static List<ActorRef<DeviceActor.Command>> of(
      ActorRef<DeviceActor.Command> of, List<ActorRef<DeviceActor.Command>> everyDevice) {
    int at = Math.max(0, everyDevice.indexOf(of));
    for (int i = 1; i <= everyDevice.size(); i++) {
      ActorRef<DeviceActor.Command> d = everyDevice.get((at + i) % everyDevice.size());
      if (!d.path().address().equals(of.path().address())) return List.of(d);
    }
    return List.of();
  }

  /**
   * The buddies of a run of {@code plan} on {@code devices} (rank by rank): the devices that keep
   * copies of the state of its stages' first ranks.
   */
  static List<ActorRef<DeviceActor.Command>> ofPlan(
      Plan plan,
      List<ActorRef<DeviceActor.Command>> devices,
      List<ActorRef<DeviceActor.Command>> everyDevice) {
    List<ActorRef<DeviceActor.Command>> out = new ArrayList<>();
    for (int r = 0; r < plan.worldSize(); r++) {
      if (plan.rank(r).shard() == 0 && plan.rank(r).replica() == 0) {
        for (ActorRef<DeviceActor.Command> b : of(devices.get(r), everyDevice)) {
          if (!out.contains(b)) out.add(b);
        }
      }
    }
    return out;
  }
}
