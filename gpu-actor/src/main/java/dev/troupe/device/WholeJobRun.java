package dev.troupe.device;

import dev.troupe.persistence.TensorBytes;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.metrics.MetricsLog;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.train.StateCopy;
import dev.troupe.pipeline.train.Trainer;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * A whole job trained on one device (the 1 × 1 × 1 plan), on a thread of its own: the in-process
 * {@link Trainer}, whose steps are reported to the coordinator. In a cluster, the state after every
 * step is kept as a copy on this device and on a buddy device on another node before the step is
 * reported done, and a run of a job with committed steps first recalls such copies from every
 * device, so that losing the device loses no committed step. The actor hands it what arrives for
 * the run ({@link #kept}, {@link #recalled}, {@link #stop}); the rest is the thread's.
 */
final class WholeJobRun {
  /** How long the copies of the state are waited for before the newest checkpoint is used. */
  static final long RECALL_WAIT_MS = 3000;

  /**
   * How long a step's commit is waited for before the step is reported again (a coordinator that
   * has it already only acknowledges it again).
   */
  static final long COMMIT_RESEND_MS = 10_000;

  private final DeviceActor.RunJob job;
  private final DeviceInfo device;
  private final ActorRef<DeviceActor.Command> self;
  private final AtomicBoolean stop = new AtomicBoolean();
  private final AtomicBoolean replaced = new AtomicBoolean();
  private final BlockingQueue<DeviceActor.Committed> commits = new LinkedBlockingQueue<>();
  private final BlockingQueue<Long> kept = new LinkedBlockingQueue<>();
  private final BlockingQueue<RankProtocol.Copies> recalled = new LinkedBlockingQueue<>();
  private volatile List<ActorRef<DeviceActor.Command>> buddy;

  WholeJobRun(DeviceActor.RunJob job, DeviceInfo device, ActorRef<DeviceActor.Command> self) {
    this.job = job;
    this.device = device;
    this.self = self;
    this.buddy = List.copyOf(job.buddy());
  }

  DeviceActor.RunJob job() {
    return job;
  }

  /** Stops the run at the next step boundary, after a checkpoint. */
  void stop() {
    stop.set(true);
  }

  /**
   * Another run of the job replaces this one: it stops at the next step boundary, and a step that
   * waits for its commit is not written (this run's coordinator is gone, or has let it go).
   */
  void replaced() {
    replaced.set(true);
    stop.set(true);
  }

  /** The coordinator's answer for a step this run reported done. */
  void committed(long step, boolean ok) {
    commits.add(new DeviceActor.Committed(job.runId(), step, ok));
  }

  boolean stopping() {
    return stop.get();
  }

  /** The buddy kept the copy of the state after {@code steps} steps. */
  void kept(long steps) {
    kept.add(steps);
  }

  /**
   * Keep the copies on {@code b} from now on (none: no device on another node is left); a copy
   * waiting for the old buddy's acknowledgement is sent to the new one.
   */
  void buddy(List<ActorRef<DeviceActor.Command>> b) {
    buddy = List.copyOf(b);
  }

  /** A device answered the recall of copies. */
  void recalled(RankProtocol.Copies c) {
    if (c.jobId().equals(job.jobId())) recalled.add(c);
  }

  /**
   * Trains the job; progress goes to {@code log}, or to {@code output/train.log} where it is null.
   * The end is told to the actor as {@link DeviceActor.RunFinished}.
   */
  void run(PrintStream log, boolean terminal) {
    DeviceActor.Outcome outcome;
    String reason = "";
    try {
      JobConfig config = JobConfig.parse(job.config(), Path.of(job.jobId() + ".conf"));
      Files.createDirectories(config.output());
      try (PrintStream file =
          log != null
              ? null
              : new PrintStream(
                  Files.newOutputStream(
                      config.output().resolve("train.log"),
                      StandardOpenOption.CREATE,
                      StandardOpenOption.APPEND),
                  true,
                  StandardCharsets.UTF_8)) {
        PrintStream out = file != null ? file : log;
        int layers = ModelConfig.read(config.model().resolve("config.json")).numLayers();
        Trainer trainer = new Trainer(config, out, terminal).observe(observer(layers, out));
        recall(layers, config.output().resolve("metrics.jsonl")).ifPresent(trainer::startFrom);
        if (job.why() != null) trainer.replanned(job.why(), job.plan(), job.committed());
        // the device's threads, unless the job names its own
        if (config.threads() <= 0) {
          dev.troupe.pipeline.engine.Torch.init();
          org.bytedeco.pytorch.global.torch.set_num_threads(device.threads());
        }
        trainer.run();
        outcome = trainer.stopped() ? DeviceActor.Outcome.STOPPED : DeviceActor.Outcome.COMPLETED;
      }
    } catch (Throwable e) { // whatever it was, the coordinator must hear of it
      outcome = DeviceActor.Outcome.FAILED;
      reason = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
      int nl = reason.indexOf('\n');
      if (nl >= 0) reason = reason.substring(0, nl);
    }
    self.tell(new DeviceActor.RunFinished(job.jobId(), outcome, reason));
  }

  /**
   * The copies of the state after the job's last committed step, where the devices asked keep
   * copies of every layer at that step (waited for until all have answered, at most {@link
   * #RECALL_WAIT_MS}). A step is journaled before its line is written to {@code metrics}: where a
   * coordinator was lost in between, the copies of the step before are taken, and the committed
   * step is computed again (its commit is then only acknowledged).
   */
  private Optional<StateCopy> recall(int layers, Path metrics)
      throws InterruptedException, java.io.IOException {
    if (job.committed() <= 0 || job.recallFrom().isEmpty()) return Optional.empty();
    for (ActorRef<DeviceActor.Command> d : job.recallFrom()) {
      d.tell(RankProtocol.Recall.toDevice(job.jobId(), self));
    }
    List<RankProtocol.Copy> all = new ArrayList<>();
    long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(RECALL_WAIT_MS);
    for (int answered = 0; answered < job.recallFrom().size(); answered++) {
      RankProtocol.Copies c =
          recalled.poll(Math.max(0, until - System.nanoTime()), TimeUnit.NANOSECONDS);
      if (c == null) break;
      all.addAll(c.copies());
    }
    long committed = job.committed();
    if (MetricsLog.lossAt(metrics, committed).isEmpty()) {
      Optional<RankProtocol.Copy> before = RankProtocol.Copy.covering(all, committed - 1, layers);
      if (before.isPresent()) return before.map(WholeJobRun::toState);
    }
    return RankProtocol.Copy.covering(all, committed, layers).map(WholeJobRun::toState);
  }

  private static StateCopy toState(RankProtocol.Copy c) {
    SortedMap<String, TensorData> tensors = new TreeMap<>();
    c.tensors().forEach((k, v) -> tensors.put(k, v.toTensorData()));
    return new StateCopy(
        c.steps(), tensors, c.optimizerStep(), c.lossScale(), c.growthTracker(), c.quantization());
  }

  private Trainer.StepObserver observer(int layers, PrintStream out) {
    return new Trainer.StepObserver() {
      private DeviceActor.StepDone done; // the step that waits for its commit

      @Override
      public void stepDone(long step, long total, double loss, double tokensPerS) {
        done =
            new DeviceActor.StepDone(job.jobId(), step, total, loss, tokensPerS, job.runId(), self);
        job.reportTo().tell(done);
      }

      @Override
      public boolean commit(long step) {
        return awaitCommit(done);
      }

      @Override
      public boolean stopRequested() {
        return stop.get();
      }

      @Override
      public void resumed(long step, long total, double loss) {
        // a checkpoint ahead of the coordinator's journal (the run went on, or ended, while no
        // coordinator listened): the journal learns of the step it resumes at
        if (step > job.committed() && !Double.isNaN(loss)) {
          job.reportTo()
              .tell(
                  new DeviceActor.StepDone(job.jobId(), step, total, loss, 0.0, job.runId(), self));
        }
      }

      @Override
      public boolean keepsCopies() {
        return job.keepCopies();
      }

      @Override
      public void keep(StateCopy state) {
        keepCopy(state, layers, out);
      }
    };
  }

  /**
   * Waits for the coordinator's answer to {@code done} (the step is journaled, or never will be);
   * false at once where the run was replaced. The report is sent again every {@link
   * #COMMIT_RESEND_MS}, against a report lost with a coordinator that restarted.
   */
  private boolean awaitCommit(DeviceActor.StepDone done) {
    long resendAt = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(COMMIT_RESEND_MS);
    try {
      while (!replaced.get()) {
        DeviceActor.Committed c = commits.poll(100, TimeUnit.MILLISECONDS);
        if (c != null && c.step() == done.step()) return c.ok();
        if (System.nanoTime() > resendAt) {
          job.reportTo().tell(done);
          resendAt = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(COMMIT_RESEND_MS);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    return false;
  }

  /**
   * Keeps {@code state} on this device and on the buddy, and waits until the buddy has it: a step
   * reported done then survives the loss of any one node. Where the buddy is lost the coordinator
   * names another (the copy is sent again) or none, when no other node has a device: then the copy
   * on this device is all there is. A stop request ends the wait too (the run then saves a
   * checkpoint of the step before it ends).
   */
  private void keepCopy(StateCopy state, int layers, PrintStream out) {
    Map<String, TensorBytes> tensors = new LinkedHashMap<>();
    state.tensors().forEach((k, v) -> tensors.put(k, TensorBytes.of(v)));
    RankProtocol.Copy copy =
        new RankProtocol.Copy(
            0,
            layers,
            state.step(),
            tensors,
            state.optimizerStep(),
            state.lossScale(),
            state.growthTracker(),
            state.quantization());
    self.tell(new RankProtocol.Keep(job.runId(), job.jobId(), copy, List.of()));
    List<ActorRef<DeviceActor.Command>> sentTo = List.of();
    try {
      while (true) {
        List<ActorRef<DeviceActor.Command>> now = buddy;
        if (now.isEmpty()) return;
        if (!now.equals(sentTo)) {
          for (ActorRef<DeviceActor.Command> b : now) {
            b.tell(new RankProtocol.Keep(job.runId(), job.jobId(), copy, List.of(self)));
          }
          if (!sentTo.isEmpty()) out.println("copies of the state now go to " + now.get(0).path());
          sentTo = now;
        }
        Long steps = kept.poll(100, TimeUnit.MILLISECONDS);
        if (steps != null && steps == state.step()) return;
        if (stop.get()) {
          out.println(
              "the copy of the state after step "
                  + state.step()
                  + " was not confirmed by "
                  + now.get(0).path()
                  + "; stopping with a checkpoint");
          return;
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
