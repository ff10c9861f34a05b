package dev.troupe.coordinator;

import dev.troupe.coordinator.PlanRunProtocol.Command;
import dev.troupe.coordinator.PlanRunProtocol.Committed;
import dev.troupe.coordinator.PlanRunProtocol.DeviceGone;
import dev.troupe.coordinator.PlanRunProtocol.FromRank;
import dev.troupe.coordinator.PlanRunProtocol.RecallOver;
import dev.troupe.coordinator.PlanRunProtocol.Stop;
import dev.troupe.device.DeviceActor;
import dev.troupe.device.RankProtocol;
import dev.troupe.pipeline.checkpoint.CheckpointStore;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.dist.StageWorker;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.metrics.StepOutputs;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.train.Evaluator;
import dev.troupe.pipeline.train.Replan;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * Drives one run of a job over several devices: a child of the coordinator, on its node. It hands
 * every device its rank ({@link RankProtocol.Prepare}, with the stage's part of the newest
 * checkpoint when there is one), then drives each step: {@code Go} to every rank, and {@code Apply}
 * with what {@link StepControl} decides from their reports (global gradient norm, clip, inf/NaN
 * skip, learning rate, loss scale). It writes what the one-device trainer writes, on the
 * coordinator's node: {@code metrics.jsonl}, TensorBoard scalars, checkpoints in the same format
 * (gathered from the first rank of each stage) and the final PEFT adapter. It reports every step
 * and the end of the run to the coordinator as a device does ({@link DeviceActor.StepDone}, {@link
 * DeviceActor.RunEnded}), and writes a step's outputs, and goes on, only once the coordinator has
 * journaled the step ({@link Committed}).
 *
 * <p>A stop request ends the run after the step in flight, with a checkpoint; a rank that fails
 * ends it as failed; a device that leaves the cluster ends it as stopped, so that the coordinator
 * plans again on the devices left. After every step the first rank of each stage keeps a copy of
 * the stage's trainable state on its own device and on a buddy device on another node, and waits
 * for the buddy's acknowledgement before it reports the step applied. A run of a job that has
 * committed steps first recalls those copies from every device (for {@link #RECALL_WAIT}) and
 * starts from the last committed step where they cover every layer, else from the newest checkpoint
 * (and says which steps are computed again). The first step after such a restart writes a {@code
 * replan} event to metrics.jsonl.
 */
public final class PlanRun extends AbstractBehavior<Command> {
  private enum Phase {
    RECALLING,
    PREPARING,
    FIRST_HALF,
    SECOND_HALF,
    COMMITTING,
    EVALUATING,
    QUANT_MEASURING,
    QUANT_APPLYING,
    SAVING,
    DONE
  }

  private final String runId;
  private final String jobId;
  private final JobConfig job;
  private final Plan plan;
  private final List<ActorRef<DeviceActor.Command>> devices;
  private final ActorRef<DeviceActor.Report> reportTo;
  private final ActorRef<RankProtocol.FromRank> self;
  private final CheckpointStore store;
  private final Map<Integer, Object> answers = new HashMap<>();
  private Phase phase = Phase.PREPARING;
  private long step;
  private long total = -1;
  private final StepControl control;
  private boolean stopRequested;
  private boolean finishing; // the last step is done: save, write the adapter, end
  private RunOutputs outputs; // open from prepare on
  private Map<String, Object> line; // the metrics line of the step waiting for its commit
  private String lostReason = ""; // a device left while a step waited for its commit

  private final String config;
  private final List<ActorRef<DeviceActor.Command>> everyDevice;
  private final long committed;
  private final Replan replan;
  private final Map<String, List<RankProtocol.Copy>> recalled = new HashMap<>();
  private String restoredFrom = "";
  private boolean replanReported;
  private QuantState quant; // the layers' formats and calm counts (null: the base is not quantized)
  private RunQuantCheck quantCheck; // null: the base is not quantized

  private PlanRun(ActorContext<Command> ctx, TimerScheduler<Command> timers, Order order) {
    super(ctx);
    this.runId = order.runId();
    this.jobId = order.jobId();
    this.job = order.job();
    this.plan = order.plan();
    this.devices = List.copyOf(order.devices());
    this.reportTo = order.reportTo();
    this.config = order.config();
    this.everyDevice = List.copyOf(order.everyDevice());
    this.committed = order.committed();
    this.replan = order.replan();
    this.self = ctx.messageAdapter(RankProtocol.FromRank.class, FromRank::new);
    this.store = new CheckpointStore(job.output().resolve("checkpoints"), job.checkpoint().keep());
    for (ActorRef<DeviceActor.Command> d : devices) {
      ctx.watchWith(d, new DeviceGone(d.path().toString()));
    }
    this.control = new StepControl(job, plan);
    if (committed > 0) {
      // steps were committed: look for copies of the state at that step before the checkpoints
      phase = Phase.RECALLING;
      for (ActorRef<DeviceActor.Command> d : this.everyDevice) {
        d.tell(RankProtocol.Recall.toDriver(jobId, self));
      }
      timers.startSingleTimer(new RecallOver(), RECALL_WAIT);
    } else {
      prepare(null);
    }
  }

  /** How long the copies of the trainable state are waited for. */
  private static final java.time.Duration RECALL_WAIT = java.time.Duration.ofSeconds(3);

  /**
   * Starts the ranks from {@code start}, or from the newest checkpoint (else the start) where it is
   * null.
   */
  private void prepare(RunStart start) {
    phase = Phase.PREPARING;
    try {
      Files.createDirectories(job.output());
      if (start == null) {
        start =
            RunStart.fromCheckpoint(store, m -> getContext().getLog().warn(m), control.scaler());
      }
      step = start.step();
      control.restore(start.scaler());
      restoredFrom = start.source();
      quant = start.quant(job, plan.layers());
      quantCheck = quant == null ? null : new RunQuantCheck(plan, quant, job.quantization());
      outputs = RunOutputs.open(job, store, step);
    } catch (IOException | RuntimeException e) {
      fail("cannot open the run's output in " + job.output() + ": " + e.getMessage());
      return;
    }
    if (committed > step) {
      getContext()
          .getLog()
          .warn(
              "job {}: no copy of the trainable state after step {} is left; steps {}..{} are"
                  + " computed again from the {}",
              jobId,
              committed,
              step + 1,
              committed,
              restoredFrom);
    }
    for (int r = 0; r < plan.worldSize(); r++) {
      int stage = plan.rank(r).stage();
      boolean leader = plan.rank(r).shard() == 0 && plan.rank(r).replica() == 0;
      devices
          .get(r)
          .tell(
              new RankProtocol.Prepare(
                  runId,
                  jobId,
                  config,
                  plan.pp(),
                  plan.tp(),
                  plan.dp(),
                  plan.boundaries(),
                  r,
                  this.devices,
                  start.layers(plan.firstLayer(stage), plan.endLayer(stage)),
                  start.optimizerStep(),
                  self,
                  leader ? Buddies.of(devices.get(r), everyDevice) : List.of(),
                  quant == null ? "" : quant.toJson().toString()));
    }
  }

  private Behavior<Command> recallOver() {
    if (phase != Phase.RECALLING) return this;
    List<RankProtocol.Copy> all = new ArrayList<>();
    recalled.values().forEach(all::addAll);
    Path metricsFile = job.output().resolve("metrics.jsonl");
    prepare(RunStart.fromCopies(all, committed, metricsFile, plan.layers()).orElse(null));
    return phase == Phase.DONE ? Behaviors.stopped() : this;
  }

  /**
   * Run {@code runId} of job {@code jobId} ({@code config} its job file's text, {@code job} that
   * parsed) with {@code plan} on {@code devices}, rank by rank, reporting to {@code reportTo};
   * {@code everyDevice} are all the cluster's devices (copies of the trainable state are looked for
   * on them, and buddies chosen among them), {@code committed} the job's last committed step,
   * {@code replan} why it runs again (null for a first run).
   */
  public record Order(
      String runId,
      String jobId,
      String config,
      JobConfig job,
      Plan plan,
      List<ActorRef<DeviceActor.Command>> devices,
      ActorRef<DeviceActor.Report> reportTo,
      List<ActorRef<DeviceActor.Command>> everyDevice,
      long committed,
      Replan replan) {}

  /** The driver of the run {@code order} describes. */
  public static Behavior<Command> create(Order order) {
    return Behaviors.withTimers(timers -> Behaviors.setup(ctx -> new PlanRun(ctx, timers, order)));
  }

  @Override
  public Receive<Command> createReceive() {
    return newReceiveBuilder()
        .onMessage(FromRank.class, f -> answer(f.message()))
        .onMessage(RecallOver.class, o -> recallOver())
        .onMessage(
            Stop.class,
            s -> {
              stopRequested = true;
              if (phase == Phase.PREPARING || phase == Phase.RECALLING) {
                return end(DeviceActor.Outcome.STOPPED, "");
              }
              return this;
            })
        .onMessage(DeviceGone.class, g -> lost(PlanRunProtocol.deviceLeft(g.device())))
        .onMessage(Committed.class, this::committed)
        .build();
  }

  private Behavior<Command> answer(RankProtocol.FromRank m) {
    if (phase == Phase.DONE) return this;
    switch (m) {
      case RankProtocol.Copies c when phase == Phase.RECALLING -> {
        recalled.put(c.device(), c.copies());
        if (recalled.size() == everyDevice.size()) return recallOver();
      }
      case RankProtocol.RankFailed f -> {
        if (!f.runId().equals(runId)) return this;
        return end(DeviceActor.Outcome.FAILED, "rank " + f.rank() + ": " + f.reason());
      }
      case RankProtocol.Ready r when r.runId().equals(runId) && phase == Phase.PREPARING -> {
        answers.put(r.rank(), r);
        total = r.totalSteps();
        if (answers.size() == plan.worldSize()) {
          answers.clear();
          if (step >= total) return finish();
          // a fresh run is evaluated and checked before its first step, as on one device
          if (step == 0 && job.data().eval() != null) return evaluate();
          return step == 0 ? onward() : go();
        }
      }
      case RankProtocol.Half h when h.runId().equals(runId) && phase == Phase.FIRST_HALF -> {
        answers.put(h.rank(), h);
        if (answers.size() == plan.worldSize()) return decide();
      }
      case RankProtocol.Applied a when a.runId().equals(runId) && phase == Phase.SECOND_HALF -> {
        answers.put(a.rank(), a);
        if (answers.size() == plan.worldSize()) return stepDone();
      }
      case RankProtocol.Evaluated e when e.runId().equals(runId) && phase == Phase.EVALUATING -> {
        answers.put(e.rank(), e);
        if (answers.size() == plan.worldSize()) return evaluated();
      }
      case RankProtocol.QuantMeasured q
          when q.runId().equals(runId) && phase == Phase.QUANT_MEASURING -> {
        answers.put(q.rank(), q);
        if (answers.size() == plan.worldSize()) return quantDecide();
      }
      case RankProtocol.QuantApplied q
          when q.runId().equals(runId) && phase == Phase.QUANT_APPLYING -> {
        answers.put(q.rank(), q);
        if (answers.size() == plan.worldSize()) return quantApplied();
      }
      case RankProtocol.State s when s.runId().equals(runId) && phase == Phase.SAVING -> {
        answers.put(s.rank(), s);
        if (answers.size() == plan.pp()) return saved();
      }
      default -> {} // an answer of an earlier run, or out of place: ignored
    }
    return this;
  }

  private Behavior<Command> go() {
    phase = Phase.FIRST_HALF;
    answers.clear();
    double scale = control.begin(step);
    for (ActorRef<DeviceActor.Command> d : devices) d.tell(new RankProtocol.Go(runId, step, scale));
    return this;
  }

  private Behavior<Command> decide() {
    List<StageWorker.Report> reports = new ArrayList<>();
    for (int r = 0; r < plan.worldSize(); r++) {
      reports.add(((RankProtocol.Half) answers.get(r)).report());
    }
    RankProtocol.Apply apply = control.decide(runId, step, total, reports);
    phase = Phase.SECOND_HALF;
    answers.clear();
    for (ActorRef<DeviceActor.Command> d : devices) d.tell(apply);
    return this;
  }

  private Behavior<Command> stepDone() {
    StepControl.Done done = control.done(step);
    line = done.line();
    step++;
    phase = Phase.COMMITTING;
    reportTo.tell(
        new DeviceActor.StepDone(jobId, step, total, done.loss(), done.tokensPerS(), runId, null));
    return this;
  }

  /**
   * A device of the run left: the run ends, after the commit of a step waiting for it (the
   * coordinator is there to answer), so that a journaled step has its metrics line.
   */
  private Behavior<Command> lost(String reason) {
    if (phase != Phase.COMMITTING) return end(DeviceActor.Outcome.STOPPED, reason);
    lostReason = reason;
    return this;
  }

  /** The coordinator's answer to the step just done: write its outputs and go on, or end. */
  private Behavior<Command> committed(Committed c) {
    if (phase != Phase.COMMITTING || c.step() != step) return this;
    if (!c.ok()) return end(DeviceActor.Outcome.STOPPED, lostReason);
    Map<String, Object> m = line;
    try {
      outputs.step(step, m);
      if (replan != null && !replanReported) {
        replanReported = true;
        outputs.event(
            replan.event(
                plan.toString(), restoredFrom, committed, step - 1, System.currentTimeMillis()));
      }
    } catch (IOException e) {
      return end(DeviceActor.Outcome.FAILED, "cannot write metrics: " + e.getMessage());
    }
    if (!lostReason.isEmpty()) return end(DeviceActor.Outcome.STOPPED, lostReason);
    boolean evalDue = step % job.eval().every() == 0 || step >= total;
    if (job.data().eval() != null && evalDue) return evaluate();
    return onward();
  }

  /** The eval data through every rank, after {@code step} steps. */
  private Behavior<Command> evaluate() {
    phase = Phase.EVALUATING;
    answers.clear();
    for (ActorRef<DeviceActor.Command> d : devices) {
      d.tell(new RankProtocol.Evaluate(runId, step));
    }
    return this;
  }

  /** Every rank's part is in: the eval line and scalars, then the step, a save or the end. */
  private Behavior<Command> evaluated() {
    Evaluator.Result r =
        StageWorker.EvalReport.combine(
            plan,
            rank -> {
              RankProtocol.Evaluated e = (RankProtocol.Evaluated) answers.get(rank);
              return new StageWorker.EvalReport(e.lossSum(), e.tokens(), e.right(), e.scored());
            });
    StepOutputs lines = new StepOutputs();
    Evaluator.record(r, step, lines);
    try {
      outputs.write(lines);
    } catch (IOException e) {
      return end(DeviceActor.Outcome.FAILED, "cannot write metrics: " + e.getMessage());
    }
    return onward();
  }

  /**
   * After a step's commit and eval, or before a fresh run's first step: the quantization-error
   * check where it is due, then the step, a save or the end.
   */
  private Behavior<Command> onward() {
    if (quantCheck != null && quantCheck.due(step)) {
      phase = Phase.QUANT_MEASURING;
      answers.clear();
      for (ActorRef<DeviceActor.Command> d : devices) {
        d.tell(new RankProtocol.QuantMeasure(runId, step));
      }
      return this;
    }
    return step == 0 ? go() : afterStep();
  }

  /** Every rank measured: the policy decides for the whole model, and the ranks apply it. */
  private Behavior<Command> quantDecide() {
    String decided = quantCheck.decide(answers);
    phase = Phase.QUANT_APPLYING;
    answers.clear();
    for (ActorRef<DeviceActor.Command> d : devices) {
      d.tell(new RankProtocol.QuantApply(runId, step, decided));
    }
    return this;
  }

  /** Every rank holds the decided formats: the check's line and scalars, then on. */
  private Behavior<Command> quantApplied() {
    StepOutputs lines = new StepOutputs();
    String summary = quantCheck.record(answers, step, lines);
    try {
      outputs.write(lines);
    } catch (IOException e) {
      return end(DeviceActor.Outcome.FAILED, "cannot write metrics: " + e.getMessage());
    }
    getContext().getLog().info("job {}: {}", jobId, summary);
    return onward();
  }

  /** After a committed step (and its eval): the next step, a save, or the end. */
  private Behavior<Command> afterStep() {
    boolean end = step >= total;
    boolean due = step % job.checkpoint().every() == 0;
    if (end) return finish();
    if (due || stopRequested) return save();
    return go();
  }

  /** Gathers the trainable state from the first rank of every stage. */
  private Behavior<Command> save() {
    phase = Phase.SAVING;
    answers.clear();
    for (int s = 0; s < plan.pp(); s++) {
      devices.get(plan.rankOf(s, 0, 0)).tell(new RankProtocol.Collect(runId));
    }
    return this;
  }

  private Behavior<Command> finish() {
    finishing = true;
    return save();
  }

  private Behavior<Command> saved() {
    List<RankProtocol.State> states = new ArrayList<>();
    for (Object o : answers.values()) states.add((RankProtocol.State) o);
    try {
      outputs.save(
          step,
          control.scaler(),
          control.precision(Math.max(0, step - 1)),
          states,
          quant,
          finishing);
      if (finishing) return end(DeviceActor.Outcome.COMPLETED, "");
    } catch (IOException | RuntimeException e) {
      return end(DeviceActor.Outcome.FAILED, "cannot save: " + e.getMessage());
    }
    if (stopRequested) return end(DeviceActor.Outcome.STOPPED, "");
    return go();
  }

  /** Releases every rank, closes the output, reports the end; the actor stops. */
  private Behavior<Command> end(DeviceActor.Outcome outcome, String reason) {
    phase = Phase.DONE;
    for (ActorRef<DeviceActor.Command> d : devices) d.tell(new RankProtocol.Release(runId));
    try {
      if (outputs != null) outputs.close();
    } catch (IOException e) {
      // the run is over either way; the metrics lines written so far are flushed per line
    }
    reportTo.tell(new DeviceActor.RunEnded(jobId, outcome, reason, runId));
    return Behaviors.stopped();
  }

  private void fail(String reason) {
    phase = Phase.DONE;
    reportTo.tell(new DeviceActor.RunEnded(jobId, DeviceActor.Outcome.FAILED, reason, runId));
  }
}
