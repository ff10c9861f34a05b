package dev.troupe.coordinator;

import dev.troupe.device.DeviceActor;
import dev.troupe.persistence.ClusterMessage;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;

/** The coordinator's messages: what clients send and what it answers. */
public final class CoordinatorProtocol {
  private CoordinatorProtocol() {}

  /** What the coordinator understands. */
  public sealed interface Command extends ClusterMessage {}

  /** Queues a job; answered with {@link Accepted} (the job id) or {@link Refused}. */
  public record Submit(String name, String config, ActorRef<Reply> replyTo) implements Command {}

  /** Pauses, resumes or cancels a job; answered with {@link Accepted} or {@link Refused}. */
  public record Control(String jobId, Action action, ActorRef<Reply> replyTo) implements Command {}

  /**
   * Drains a node ({@code pekko://system@host:port} or {@code host:port}): the running plan stops
   * using its devices at the next step boundary and no plan uses them while the node stays;
   * answered with {@link Accepted} (what happens, in words) or {@link Refused}: at once, or with
   * {@code await} once the run that used the node has ended (a node that is leaving waits so).
   */
  public record Drain(String node, boolean await, ActorRef<Reply> replyTo) implements Command {}

  /** Asks for every job; answered with {@link Jobs}. */
  public record ListJobs(ActorRef<Reply> replyTo) implements Command {}

  /** A device's report on the job it runs, adapted (internal). */
  record DeviceReport(DeviceActor.Report report) implements Command {}

  /** The device actors the receptionist lists now, in a fixed order (internal). */
  record Devices(List<ActorRef<DeviceActor.Command>> devices) implements Command {}

  /** Journals a re-plan (internal: planning happens outside the command handlers' effects). */
  record RecordReplan(JobEvent.JobReplanned event) implements Command {}

  /** A device's description, or null where it did not answer (internal). */
  record Described(ActorRef<DeviceActor.Command> device, DeviceActor.Description description)
      implements Command {}

  /** Job controls. */
  public enum Action {
    PAUSE,
    RESUME,
    CANCEL
  }

  /** What the coordinator answers. */
  public sealed interface Reply extends ClusterMessage {}

  /** Done: the job concerned. */
  public record Accepted(String jobId) implements Reply {}

  /** Not done, and why. */
  public record Refused(String reason) implements Reply {}

  /**
   * Every job, in submission order, and what runs where.
   *
   * @param members the cluster's members as the coordinator sees them: address, status, roles
   * @param devices the device actors the coordinator sees (paths)
   * @param runningJob the job a device runs now ("" if none)
   * @param runningOn the paths of the devices it runs on, rank by rank ("" if none)
   * @param plan the running job's plan ({@code pp=1 tp=1 dp=1 ...}; "" if none)
   * @param planExplanation why the planner chose it, in a few lines, or why the job waits
   * @param lastRecovery the last re-plan of a job and the time from learning of its cause to the
   *     next committed step ("" if none since this coordinator started)
   */
  public record Jobs(
      List<Job> jobs,
      List<String> members,
      List<String> devices,
      String runningJob,
      String runningOn,
      String plan,
      String planExplanation,
      String lastRecovery)
      implements Reply {}
}
