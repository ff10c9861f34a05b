package dev.troupe.coordinator;

import dev.troupe.device.DeviceActor;
import dev.troupe.pipeline.dist.Planner;
import dev.troupe.pipeline.dist.ScalingPolicy;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.train.Replan;
import java.util.List;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * The run the {@link Coordinator} has out, and the plan it runs with: a whole job on one device
 * ({@link DeviceActor.RunJob}) or a {@link PlanRun} driving several, and the devices that keep
 * copies of its state on other nodes (buddies). The coordinator's actor alone reads and changes it.
 * A run stays here until its end is reported, so a job stopped and resumed meanwhile runs again
 * only after that.
 */
final class RunInFlight {
  String dispatchedJob; // the job a device runs for us now, if any
  ActorRef<DeviceActor.Command> dispatchedTo;
  String dispatchedRun = ""; // the id of the job's latest run, on one device or several
  ActorRef<PlanRunProtocol.Command> planRun; // the driver of a run over several devices
  String planRunJob;
  List<ActorRef<DeviceActor.Command>> planDevices = List.of();
  // the devices that keep copies of the running run's state for it, on other nodes
  List<ActorRef<DeviceActor.Command>> runBuddies = List.of();
  String plan = "";
  String planExplanation = "";
  // the running plan: its job's settings, estimated step time and when it was made
  private JobConfig runningConfig;
  private ModelConfig runningModel;
  private double planStepSeconds;
  private long plannedAtMillis;
  private long lastStepAtMillis; // when the last step was reported done (0: none yet)

  /** Whether a run is going, on one device or several. */
  boolean going() {
    return planRun != null || dispatchedTo != null;
  }

  /** The devices the running job's run uses now (none when nothing runs). */
  List<ActorRef<DeviceActor.Command>> devices() {
    return planRun != null ? planDevices : dispatchedTo != null ? List.of(dispatchedTo) : List.of();
  }

  /** The job a run is out for, or null. */
  String job() {
    return dispatchedJob != null ? dispatchedJob : planRunJob;
  }

  /** The devices the run is out on, as paths with {@code self}'s address. */
  String where(Address self) {
    List<ActorRef<DeviceActor.Command>> used =
        dispatchedTo != null ? List.of(dispatchedTo) : planDevices;
    return String.join(", ", used.stream().map(d -> d.path().toStringWithAddress(self)).toList());
  }

  /**
   * The re-plan that losing the run for {@code cause} at {@code nowMillis} makes ({@code runs}: the
   * runs made so far), with how long after the last step reported the loss was seen.
   */
  Replan lossReplan(String cause, int runs, long nowMillis) {
    long sinceStep = lastStepAtMillis > 0 ? nowMillis - lastStepAtMillis : -1;
    return new Replan(cause, plan, runs, nowMillis, sinceStep);
  }

  /** The driver of job {@code jobId}'s run over several devices, or null. */
  ActorRef<PlanRunProtocol.Command> driverOf(String jobId) {
    return jobId.equals(planRunJob) ? planRun : null;
  }

  /** Job {@code jobId}'s run {@code runId} goes to {@code device} whole, with these buddies. */
  void sent(
      String jobId,
      String runId,
      ActorRef<DeviceActor.Command> device,
      List<ActorRef<DeviceActor.Command>> buddies) {
    dispatchedJob = jobId;
    dispatchedRun = runId;
    dispatchedTo = device;
    runBuddies = buddies;
  }

  /** Job {@code jobId}'s run {@code runId} is driven by {@code driver} over {@code devices}. */
  void driven(
      String jobId,
      String runId,
      ActorRef<PlanRunProtocol.Command> driver,
      List<ActorRef<DeviceActor.Command>> devices,
      List<ActorRef<DeviceActor.Command>> buddies) {
    planRunJob = jobId;
    dispatchedRun = runId;
    planRun = driver;
    planDevices = List.copyOf(devices);
    runBuddies = buddies;
  }

  /** Job {@code jobId} could not be planned: its failure, as the end of run "unplanned", is due. */
  void unplanned(String jobId) {
    dispatchedRun = "unplanned";
    dispatchedJob = jobId; // until that report arrives
    dispatchedTo = null;
  }

  /** A step of the run was reported done at {@code nowMillis}. */
  void stepReported(long nowMillis) {
    lastStepAtMillis = nowMillis;
  }

  /** A new plan of {@code job} ({@code model} its model) is made at {@code nowMillis}. */
  void planned(Planner.Choice choice, JobConfig job, ModelConfig model, long nowMillis) {
    plan = choice.plan().toString();
    planExplanation = choice.explanation();
    runningConfig = job;
    runningModel = model;
    planStepSeconds = choice.stepSeconds();
    plannedAtMillis = nowMillis;
  }

  /** Asks the run that is going to end at its next step boundary. */
  void stopAtBoundary() {
    if (planRun != null) planRun.tell(new PlanRunProtocol.Stop());
    else dispatchedTo.tell(new DeviceActor.StopJob(dispatchedJob));
  }

  /**
   * Stops job {@code id} at the next step boundary (its device checkpoints there). A run stays
   * known until it has ended, so a job resumed meanwhile runs again only after that (the step in
   * flight is committed by this run, not computed again by the next).
   */
  void stop(String id) {
    if (id.equals(dispatchedJob)) {
      if (dispatchedTo != null) dispatchedTo.tell(new DeviceActor.StopJob(id));
      else dispatchedJob = null; // no run was sent (it could not be planned)
    }
    if (id.equals(planRunJob) && planRun != null) planRun.tell(new PlanRunProtocol.Stop());
  }

  /**
   * The receptionist's listing of devices changed: a run over several devices whose device or buddy
   * is gone ends; a run on one device gets a new buddy where that changed ({@code cluster}: only in
   * a cluster). Returns why a run on one device is lost (its device is gone; the job is to be sent
   * again, from the copies), else null.
   */
  String listingChanged(DeviceRoster roster, boolean cluster) {
    String lost = null;
    if (dispatchedTo != null && !roster.isListed(dispatchedTo)) {
      lost = PlanRunProtocol.deviceLeft(dispatchedTo.path());
      dispatchedJob = null;
      dispatchedTo = null;
    }
    // a run over several devices ends when one of its devices leaves the listing (the
    // receptionist drops a node's services once it is unreachable, well before the node is
    // downed and removed, which is when the run's own watch fires)
    if (planRun != null) {
      for (ActorRef<DeviceActor.Command> used : planDevices) {
        if (!roster.isListed(used)) {
          planRun.tell(new PlanRunProtocol.DeviceGone(used.path().toString()));
          break;
        }
      }
    }
    if (dispatchedTo != null && cluster) {
      // a run on one device keeps its copies on the first device after it on another node: one
      // that joined, or the next when its buddy left (none when no other node has a device)
      List<ActorRef<DeviceActor.Command>> buddy = Buddies.of(dispatchedTo, roster.usable());
      if (!buddy.equals(runBuddies)) {
        runBuddies = buddy;
        dispatchedTo.tell(new DeviceActor.NewBuddy(dispatchedRun, buddy));
      }
    }
    // a buddy of a run over several devices left: the ranks cannot report further steps safely
    // (they wait for the buddy's acknowledgement), so the run ends at once, as for the loss of one
    // of its own devices; the next run restores the last committed step from the copies on the
    // ranks' own devices and has buddies that are there
    for (ActorRef<DeviceActor.Command> buddy : runBuddies) {
      if (planRun != null && !roster.isListed(buddy)) {
        runBuddies = List.of();
        planRun.tell(new PlanRunProtocol.DeviceGone(buddy.path().toString()));
        break;
      }
    }
    return lost;
  }

  /**
   * Run {@code e} of the job that runs now ended: it is forgotten. Returns whether it was a run
   * over several devices.
   */
  boolean ended(DeviceActor.RunEnded e) {
    if (e.jobId().equals(dispatchedJob) || e.jobId().equals(planRunJob)) runBuddies = List.of();
    if (e.jobId().equals(dispatchedJob)) {
      dispatchedJob = null;
      dispatchedTo = null;
    }
    if (!e.jobId().equals(planRunJob)) return false;
    planRun = null;
    planRunJob = null;
    planDevices = List.of();
    return true;
  }

  /**
   * With {@code parallel = auto}: why devices that joined should be taken into the plan (the
   * planner's estimate of the step time falls by the job's {@code elastic.min-gain}, no sooner than
   * {@code elastic.cooldown-seconds} after the last plan), else null.
   */
  String growth(DeviceRoster roster, long nowMillis) {
    if (runningConfig == null || !runningConfig.parallel().auto() || !going()) return null;
    List<ActorRef<DeviceActor.Command>> usable =
        ScalingPolicy.limit(runningConfig.elastic(), roster.usable());
    double sincePlan = (nowMillis - plannedAtMillis) / 1000.0;
    if (!ScalingPolicy.mayGrow(runningConfig.elastic(), runningConfig.parallel(), sincePlan)) {
      return null; // before planning: this runs after every committed step
    }
    if (devices().containsAll(usable) || !roster.allDescribed(usable)) return null;
    Planner.Choice choice;
    try {
      choice =
          Planner.plan(
              Planner.Workload.of(runningConfig, runningModel),
              runningConfig.parallel(),
              roster.offered(usable));
    } catch (RuntimeException e) {
      return null; // the next dispatch reports what is wrong
    }
    return ScalingPolicy.growth(
        runningConfig.elastic(),
        runningConfig.parallel(),
        planStepSeconds,
        plan,
        sincePlan,
        choice);
  }
}
