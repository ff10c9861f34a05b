package dev.troupe.device;

import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * The actor of one device: one per GPU or CPU slot on every node. So far it describes itself (the
 * planner's input); holding a stage, running forward/backward passes and the collectives come with
 * the rest of the distributed runtime.
 */
public final class DeviceActor {
  private DeviceActor() {}

  /** What a device actor understands. */
  public sealed interface Command permits Describe {}

  /** Asks for the device's description. */
  public record Describe(ActorRef<Description> replyTo) implements Command {}

  /**
   * A device as its actor reports it.
   *
   * @param device the device
   * @param node the node's cluster address ({@code pekko://troupe@host:port})
   */
  public record Description(DeviceInfo device, String node) {}

  /** The behavior of the actor of {@code device} on the node at {@code node}. */
  public static Behavior<Command> create(DeviceInfo device, String node) {
    return Behaviors.receiveMessage(
        (Command c) -> {
          switch (c) {
            case Describe d -> d.replyTo().tell(new Description(device, node));
          }
          return Behaviors.same();
        });
  }
}
