package dev.troupe.coordinator;

import dev.troupe.device.DeviceActor;
import dev.troupe.pipeline.dist.Planner;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SortedSet;
import java.util.TreeSet;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * The device actors the coordinator knows of: those the receptionist lists, their descriptions,
 * those a run lost (which the receptionist may still list for a moment) and the nodes drained with
 * {@code troupe drain}. Part of the coordinator's state, touched by its actor only; not journaled
 * (a recovered coordinator learns the devices again from the receptionist).
 */
final class DeviceRoster {
  private List<ActorRef<DeviceActor.Command>> listed = List.of();
  private final Map<ActorRef<DeviceActor.Command>, DeviceActor.Description> described =
      new HashMap<>();
  private final Set<ActorRef<DeviceActor.Command>> asked = new HashSet<>();
  private final Set<String> lost = new HashSet<>();
  private final Set<String> drained = new HashSet<>();

  /**
   * Takes the receptionist's new listing and forgets what left it: descriptions, losses, and a
   * drained node once none of its devices is listed (it left the cluster). Returns the devices to
   * ask for their description: those listed and not asked yet.
   */
  List<ActorRef<DeviceActor.Command>> listing(List<ActorRef<DeviceActor.Command>> devices) {
    listed = List.copyOf(devices);
    Set<String> paths = new HashSet<>();
    for (ActorRef<DeviceActor.Command> d : listed) paths.add(d.path().toString());
    lost.retainAll(paths);
    described.keySet().retainAll(listed);
    drained.removeIf(node -> described.values().stream().noneMatch(x -> x.node().equals(node)));
    asked.retainAll(listed);
    List<ActorRef<DeviceActor.Command>> ask = new ArrayList<>();
    for (ActorRef<DeviceActor.Command> d : listed) if (asked.add(d)) ask.add(d);
    return ask;
  }

  /** The devices the receptionist lists now, in the cluster's order (by path). */
  List<ActorRef<DeviceActor.Command>> listed() {
    return listed;
  }

  boolean isListed(ActorRef<DeviceActor.Command> d) {
    return listed.contains(d);
  }

  /**
   * Device {@code d} described itself; null: it did not answer (asked again with the next list).
   */
  void described(ActorRef<DeviceActor.Command> d, DeviceActor.Description description) {
    if (description == null) asked.remove(d);
    else if (listed.contains(d)) described.put(d, description);
  }

  /** Whether every one of {@code devices} has described itself. */
  boolean allDescribed(Collection<ActorRef<DeviceActor.Command>> devices) {
    return described.keySet().containsAll(devices);
  }

  /** A run lost the device at {@code path}: it is not planned on while it is still listed. */
  void lose(String path) {
    lost.add(path);
  }

  /** The listed devices a plan may use: not lost, not on a drained node. */
  List<ActorRef<DeviceActor.Command>> usable() {
    return listed.stream()
        .filter(d -> !lost.contains(d.path().toString()))
        .filter(d -> described.get(d) == null || !drained.contains(described.get(d).node()))
        .toList();
  }

  /** The planner's view of {@code devices} (all described). */
  List<Planner.Device> offered(List<ActorRef<DeviceActor.Command>> devices) {
    List<Planner.Device> offered = new ArrayList<>();
    for (ActorRef<DeviceActor.Command> d : devices) {
      DeviceActor.Description desc = described.get(d);
      offered.add(
          new Planner.Device(
              desc.device().id(),
              desc.node(),
              desc.device().memoryBytes(),
              Math.max(1, desc.device().threads())));
    }
    return offered;
  }

  /** The actors of the planner's {@code chosen} devices, in its order, found among {@code in}. */
  List<ActorRef<DeviceActor.Command>> actorsOf(
      List<Planner.Device> chosen, List<ActorRef<DeviceActor.Command>> in) {
    List<ActorRef<DeviceActor.Command>> out = new ArrayList<>();
    for (Planner.Device d : chosen) {
      for (ActorRef<DeviceActor.Command> ref : in) {
        DeviceActor.Description desc = described.get(ref);
        if (desc != null && desc.device().id().equals(d.id()) && desc.node().equals(d.node())) {
          out.add(ref);
        }
      }
    }
    return out;
  }

  /** The nodes with described devices. */
  SortedSet<String> nodes() {
    SortedSet<String> nodes = new TreeSet<>();
    for (DeviceActor.Description desc : described.values()) nodes.add(desc.node());
    return nodes;
  }

  /** The node with devices that {@code wanted} names: its address, or its {@code host:port}. */
  Optional<String> node(String wanted) {
    String w = wanted.strip();
    return nodes().stream().filter(n -> n.equals(w) || n.endsWith("@" + w)).findFirst();
  }

  /** Leaves {@code node}'s devices out of every plan while it stays listed. */
  void drain(String node) {
    drained.add(node);
  }

  /** Whether device {@code d} is on {@code node}. */
  boolean on(ActorRef<DeviceActor.Command> d, String node) {
    DeviceActor.Description desc = described.get(d);
    return desc != null && desc.node().equals(node);
  }
}
