package dev.troupe.device;

import dev.troupe.persistence.ClusterMessage;
import dev.troupe.pipeline.train.Replan;
import java.io.PrintStream;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.actor.typed.receptionist.ServiceKey;

/**
 * The actor of one device: one per GPU or CPU slot on every node, registered with the receptionist
 * under {@link #KEY} so that the coordinator finds it. It describes its device, and it trains a
 * whole job on its device when the coordinator asks ({@link RunJob}; the 1 × 1 × 1 plan): the job
 * runs on a thread of its own, every step is reported, and {@link StopJob} stops it at the next
 * step boundary after a checkpoint, so running the job again resumes there. In a cluster the job's
 * state is copied after every step to this device and to a buddy device on another node, and a run
 * of a job with committed steps starts from such copies ({@link WholeJobRun}). One job at a time; a
 * run asked for while another is stopping starts when that one has ended.
 *
 * <p>In a distributed run (several devices) it holds one rank instead: a pipeline stage's tensor
 * shard in one data-parallel replica ({@link RankProtocol}, {@link RankHost}), exchanging
 * activations, gradients and reduces with the other ranks' device actors directly.
 */
public final class DeviceActor {
  private DeviceActor() {}

  /** The receptionist key of every device actor in the cluster. */
  public static final ServiceKey<Command> KEY = ServiceKey.create(Command.class, "troupe-devices");

  /** What a device actor understands. */
  public sealed interface Command extends ClusterMessage
      permits Describe,
          RunJob,
          StopJob,
          NewBuddy,
          Committed,
          CoordinatorGone,
          RunFinished,
          Recalled,
          RankProtocol.ToRank {}

  /** Asks for the device's description. */
  public record Describe(ActorRef<Description> replyTo) implements Command {}

  /**
   * A device as its actor reports it.
   *
   * @param device the device
   * @param node the node's cluster address ({@code pekko://troupe@host:port})
   */
  public record Description(DeviceInfo device, String node) implements ClusterMessage {}

  /**
   * Trains job {@code jobId} (its job file's text) on this device, reporting to {@code reportTo}.
   *
   * @param runId this run of the job (copies of its state are acknowledged under it)
   * @param committed the job's last committed step: a run with committed steps first asks {@code
   *     recallFrom} for the copies they keep of the state after that step, and starts from them
   *     where they cover every layer, else from the newest checkpoint
   * @param buddy a device on another node that keeps a copy of the state after every step, before
   *     the step is reported done (empty where there is none)
   * @param keepCopies whether to keep copies at all (on this device and the buddy); false in one
   *     process, where a copy would die with the run
   * @param plan the plan, for the {@code replan} line
   * @param why why the job runs again (null for a first run, or a run resumed on request): said in
   *     a {@code replan} line of metrics.jsonl after the first step
   */
  public record RunJob(
      String runId,
      String jobId,
      String config,
      ActorRef<Report> reportTo,
      long committed,
      List<ActorRef<Command>> recallFrom,
      List<ActorRef<Command>> buddy,
      boolean keepCopies,
      String plan,
      Replan why)
      implements Command {}

  /** Stops job {@code jobId} at the next step boundary (nothing if it is not running here). */
  public record StopJob(String jobId) implements Command {}

  /**
   * The run {@code runId} of a whole job keeps its copies on {@code buddy} from now on (none where
   * no device on another node is left).
   */
  public record NewBuddy(String runId, List<ActorRef<Command>> buddy) implements Command {}

  /**
   * The coordinator journaled step {@code step} of run {@code runId} ({@code ok}), or never will
   * (the run is no longer the job's, or the job was cancelled): the run writes the step's metrics,
   * scalars and checkpoint only after this, and stops where it is not ok.
   */
  public record Committed(String runId, long step, boolean ok) implements Command {}

  /**
   * The coordinator run {@code runId} reports to has stopped, or its node left the cluster: nothing
   * of the run will be committed any more (internal).
   */
  record CoordinatorGone(String runId) implements Command {}

  /** The training thread ended (internal). */
  record RunFinished(String jobId, Outcome outcome, String reason) implements Command {}

  /** Another device's answer to {@link RankProtocol.Recall#toDevice}: the copies it keeps. */
  public record Recalled(RankProtocol.Copies copies) implements Command {}

  /** What a device reports about a job it runs. */
  public sealed interface Report extends ClusterMessage permits StepDone, RunEnded {}

  /**
   * Step {@code step} of {@code total} is done by run {@code runId}; where {@code commitTo} is not
   * null, that device waits for {@link Committed} before it writes the step's outputs (null: the
   * coordinator's own run over several devices, which it tells directly).
   */
  public record StepDone(
      String jobId,
      long step,
      long total,
      double loss,
      double tokensPerS,
      String runId,
      ActorRef<Command> commitTo)
      implements Report {}

  /**
   * Run {@code runId} ended: trained to the last step, stopped on request, or failed (with the
   * reason).
   */
  public record RunEnded(String jobId, Outcome outcome, String reason, String runId)
      implements Report {}

  /** How a run ended. */
  public enum Outcome {
    COMPLETED,
    STOPPED,
    FAILED
  }

  /**
   * The behavior of the actor of {@code device} on the node at {@code node}; a job's progress goes
   * to {@code output/train.log}.
   */
  public static Behavior<Command> create(DeviceInfo device, String node) {
    return create(device, node, null, false);
  }

  /**
   * Like {@link #create(DeviceInfo, String)}, with a job's progress on {@code log} instead (the
   * one-process {@code troupe train}); {@code terminal}: redraw a progress line.
   */
  public static Behavior<Command> create(
      DeviceInfo device, String node, PrintStream log, boolean terminal) {
    return Behaviors.setup(
        ctx -> {
          ctx.getSystem().receptionist().tell(Receptionist.register(KEY, ctx.getSelf()));
          return idle(ctx, new Where(device, node, log, terminal, new Hosted()));
        });
  }

  /**
   * The device, its node, where a run's progress goes ({@code log} null: train.log), and the rank
   * of a distributed run it holds.
   */
  private record Where(
      DeviceInfo device, String node, PrintStream log, boolean terminal, Hosted hosted) {}

  /**
   * The rank this device holds for a distributed run, if any, and the copies of trainable state it
   * keeps for the running job (touched by the actor only).
   */
  private static final class Hosted {
    static final int KEPT = 4;
    RankHost host;
    String copiesOf = "";
    final java.util.List<RankProtocol.Copy> copies = new java.util.ArrayList<>();

    /**
     * Keeps {@code c}; of each layer range the four newest copies, of one job (a coordinator that
     * takes over knows the steps its journal committed, which may lag the ranks by a step or two).
     */
    void keep(String jobId, RankProtocol.Copy c) {
      if (!jobId.equals(copiesOf)) {
        copies.clear();
        copiesOf = jobId;
      }
      copies.removeIf(x -> x.firstLayer() == c.firstLayer() && x.steps() == c.steps());
      copies.add(c);
      java.util.List<RankProtocol.Copy> same =
          copies.stream()
              .filter(x -> x.firstLayer() == c.firstLayer() && x.endLayer() == c.endLayer())
              .sorted(java.util.Comparator.comparingLong(RankProtocol.Copy::steps).reversed())
              .toList();
      for (int i = KEPT; i < same.size(); i++) copies.remove(same.get(i));
    }
  }

  private static Behavior<Command> rank(Where at, RankProtocol.ToRank m) {
    Hosted h = at.hosted();
    if (m instanceof RankProtocol.Keep k) {
      h.keep(k.jobId(), k.copy());
      for (ActorRef<Command> ack : k.ackTo()) {
        ack.tell(new RankProtocol.Kept(k.runId(), k.copy().firstLayer(), k.copy().steps()));
      }
      return Behaviors.same();
    }
    if (m instanceof RankProtocol.Recall r) {
      java.util.List<RankProtocol.Copy> mine =
          r.jobId().equals(h.copiesOf) ? java.util.List.copyOf(h.copies) : java.util.List.of();
      var copies = new RankProtocol.Copies(r.jobId(), at.device().id() + "@" + at.node(), mine);
      if (r.device() != null) r.device().tell(new Recalled(copies));
      else r.replyTo().tell(copies);
      return Behaviors.same();
    }
    if (m instanceof RankProtocol.Prepare p) {
      if (h.host != null) h.host.release();
      PrintStream quiet = new PrintStream(java.io.OutputStream.nullOutputStream());
      h.host = new RankHost(p, at.device(), p.rank() == 0 && at.log() != null ? at.log() : quiet);
      return Behaviors.same();
    }
    String runId =
        switch (m) {
          case RankProtocol.Go g -> g.runId();
          case RankProtocol.Apply a -> a.runId();
          case RankProtocol.Collect c -> c.runId();
          case RankProtocol.Exchange e -> e.runId();
          case RankProtocol.Release r -> r.runId();
          case RankProtocol.Prepare p -> p.runId();
          case RankProtocol.Kept k -> k.runId();
          case RankProtocol.Keep k -> k.runId();
          case RankProtocol.Recall r -> "";
          case RankProtocol.Evaluate e -> e.runId();
          case RankProtocol.QuantMeasure q -> q.runId();
          case RankProtocol.QuantApply q -> q.runId();
        };
    if (h.host == null || !h.host.runId().equals(runId)) return Behaviors.same(); // an old run's
    switch (m) {
      case RankProtocol.Go g -> h.host.go(g);
      case RankProtocol.Apply a -> h.host.apply(a);
      case RankProtocol.Collect c -> h.host.collect();
      case RankProtocol.Exchange e -> h.host.exchange(e);
      case RankProtocol.Release r -> {
        h.host.release();
        h.host = null;
      }
      case RankProtocol.Kept k -> h.host.kept(k);
      case RankProtocol.Prepare p -> {}
      case RankProtocol.Keep k -> {}
      case RankProtocol.Recall r -> {}
      case RankProtocol.Evaluate e -> h.host.evaluate(e);
      case RankProtocol.QuantMeasure q -> h.host.quantMeasure(q);
      case RankProtocol.QuantApply q -> h.host.quantApply(q);
    }
    return Behaviors.same();
  }

  private static Behavior<Command> idle(ActorContext<Command> ctx, Where at) {
    return Behaviors.receive(Command.class)
        .onMessage(Describe.class, d -> describe(d, at))
        .onMessage(RankProtocol.ToRank.class, m -> rank(at, m))
        .onMessage(RunJob.class, r -> start(ctx, at, r))
        .onMessage(StopJob.class, s -> Behaviors.same())
        .onMessage(RunFinished.class, f -> Behaviors.same())
        .onMessage(Recalled.class, f -> Behaviors.same())
        .onMessage(NewBuddy.class, b -> Behaviors.same())
        .onMessage(Committed.class, c -> Behaviors.same())
        .onMessage(CoordinatorGone.class, g -> Behaviors.same())
        .build();
  }

  private static Behavior<Command> describe(Describe d, Where at) {
    d.replyTo().tell(new Description(at.device(), at.node()));
    return Behaviors.same();
  }

  private static Behavior<Command> start(ActorContext<Command> ctx, Where at, RunJob r) {
    WholeJobRun run = new WholeJobRun(r, at.device(), ctx.getSelf());
    Thread t =
        new Thread(
            () -> run.run(at.log(), at.terminal()), "troupe-" + at.device().id() + "-" + r.jobId());
    t.setDaemon(true);
    t.start();
    // a run whose coordinator is gone stops at its next step: a coordinator that took over runs
    // the job again from its journal, and this run's steps would never be committed
    ctx.watchWith(r.reportTo(), new CoordinatorGone(r.runId()));
    return running(ctx, at, run, null);
  }

  private static Behavior<Command> running(
      ActorContext<Command> ctx, Where at, WholeJobRun run, RunJob next) {
    RunJob current = run.job();
    return Behaviors.receive(Command.class)
        .onMessage(Describe.class, d -> describe(d, at))
        .onMessage(
            RankProtocol.Kept.class,
            k -> {
              if (k.runId().equals(current.runId())) run.kept(k.steps());
              else rank(at, k);
              return Behaviors.same();
            })
        .onMessage(RankProtocol.ToRank.class, m -> rank(at, m))
        .onMessage(
            Recalled.class,
            f -> {
              run.recalled(f.copies());
              return Behaviors.same();
            })
        .onMessage(
            NewBuddy.class,
            b -> {
              if (b.runId().equals(current.runId())) run.buddy(b.buddy());
              return Behaviors.same();
            })
        .onMessage(
            Committed.class,
            c -> {
              if (c.runId().equals(current.runId())) run.committed(c.step(), c.ok());
              return Behaviors.same();
            })
        .onMessage(
            CoordinatorGone.class,
            g -> {
              if (g.runId().equals(current.runId())) {
                ctx.getLog().info("the coordinator of {} is gone; stopping it", current.runId());
                run.replaced();
              }
              return Behaviors.same();
            })
        .onMessage(
            StopJob.class,
            s -> {
              if (s.jobId().equals(current.jobId())) run.stop();
              RunJob keep = next != null && next.jobId().equals(s.jobId()) ? null : next;
              return running(ctx, at, run, keep);
            })
        .onMessage(
            RunJob.class,
            r -> {
              if (r.runId().equals(current.runId())) return Behaviors.same();
              // another run of the job that runs here: a coordinator that took over (its journal
              // may lag this run by a step) or a resume while stopping; this run stops at its step
              // boundary and the new one starts from what it restores; a step of this run that
              // waits
              // for its commit is not written (the new run computes it again where the journal
              // has it)
              if (r.jobId().equals(current.jobId())) run.replaced();
              return running(ctx, at, run, r);
            })
        .onMessage(
            RunFinished.class,
            f -> {
              ctx.unwatch(current.reportTo());
              current
                  .reportTo()
                  .tell(new RunEnded(f.jobId(), f.outcome(), f.reason(), current.runId()));
              return next == null ? idle(ctx, at) : start(ctx, at, next);
            })
        .build();
  }
}
