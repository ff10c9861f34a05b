package dev.troupe.pipeline.train;

import dev.troupe.pipeline.checkpoint.Checkpoint;
import dev.troupe.pipeline.checkpoint.CheckpointStore;
import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.data.BatchPlan;
import dev.troupe.pipeline.data.Example;
import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.metrics.MetricsLog;
import dev.troupe.pipeline.metrics.ProgressReporter;
import dev.troupe.pipeline.metrics.StepOutputs;
import dev.troupe.pipeline.metrics.TensorBoardWriter;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.WeightReader;
import dev.troupe.pipeline.quant.QuantState;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.bytedeco.pytorch.global.torch;

/**
 * Runs a fine-tuning job in this process: LoRA on a frozen base, FP32 warm-up then the job's
 * precision, checkpoints it can resume from, metrics.jsonl, TensorBoard and the final PEFT adapter
 * in {@code output/adapter}.
 */
public final class Trainer {
  private final JobConfig job;
  private final PrintStream out;
  private final boolean terminal;
  private StepObserver observer;
  private double lastLoss = Double.NaN;
  private double lastTokensPerS = Double.NaN;
  private boolean stopped;
  private StateCopy startFrom;
  private Replan replan;
  private String newPlan = "";
  private long committed;
  private String restoredFrom = "";

  /**
   * Sees every committed step and may stop the run at a step boundary (pause or cancel from a
   * coordinator). A stopped run has saved a checkpoint of the step it stopped after, so running the
   * job again resumes there.
   */
  public interface StepObserver {
    /** Step {@code step} (1-based) of {@code total} is done: its loss and tokens per second. */
    void stepDone(long step, long total, double loss, double tokensPerS);

    /** Whether to stop after the step just done. */
    boolean stopRequested();

    /**
     * The run starts after step {@code step} of {@code total} (restored), whose loss was {@code
     * loss}; called before the first step, also when there is none left.
     */
    default void resumed(long step, long total, double loss) {}

    /** Whether {@link #keep} wants a copy of the state after every step. */
    default boolean keepsCopies() {
      return false;
    }

    /**
     * Keeps {@code copy}, the state after the step just done, before that step is reported done;
     * the training waits for it to return.
     */
    default void keep(StateCopy copy) {}

    /**
     * Waits until step {@code step}, just reported done, is committed (journaled by the
     * coordinator): its metrics lines, TensorBoard scalars and checkpoint are written only after.
     * False: it never will be (the run was replaced, or the job cancelled), and the run stops
     * without writing them.
     */
    default boolean commit(long step) {
      return true;
    }
  }

  public Trainer(JobConfig job, PrintStream out, boolean terminal) {
    this.job = job;
    this.out = out;
    this.terminal = terminal;
  }

  /** Reports steps to {@code o} and lets it stop the run at a step boundary. */
  public Trainer observe(StepObserver o) {
    this.observer = o;
    return this;
  }

  /**
   * Starts from {@code copy} (a copy of the state kept elsewhere) instead of the newest checkpoint.
   */
  public Trainer startFrom(StateCopy copy) {
    this.startFrom = copy;
    return this;
  }

  /**
   * Says, in a {@code replan} line of metrics.jsonl after the run's first step, why this run starts
   * again: {@code why}, the plan it runs now, and the job's last committed step.
   */
  public Trainer replanned(Replan why, String plan, long committedStep) {
    this.replan = why;
    this.newPlan = plan;
    this.committed = committedStep;
    return this;
  }

  /**
   * Where the last {@link #run} started from: {@code copies}, {@code checkpoint} or {@code start}.
   */
  public String restoredFrom() {
    return restoredFrom;
  }

  /** Whether the last {@link #run} stopped early on the observer's request. */
  public boolean stopped() {
    return stopped;
  }

  /**
   * Trains to the job's last step (resuming from the newest valid checkpoint) and returns the last
   * eval.
   */
  public Evaluator.Result run() throws IOException {
    stopped = false;
    Torch.init();
    if (job.threads() > 0) torch.set_num_threads(job.threads());
    Files.createDirectories(job.output());
    try (TrainingSetup s = TrainingSetup.open(job, out)) {
      long total = job.totalSteps(s.train().size());
      CheckpointStore store =
          new CheckpointStore(job.output().resolve("checkpoints"), job.checkpoint().keep());
      int layers = s.model().config().numLayers();
      QuantState fresh =
          job.quantization().enabled()
              ? QuantState.initial(layers, job.quantization().base())
              : null;
      TrainingState state =
          new TrainingState(
              0, new LossScaler(job.precision().initialLossScale(), 0), phase(0).label(), fresh);
      restoredFrom = "start";
      if (startFrom != null) {
        state =
            TrainingState.restore(
                startFrom, s.lora(), s.optimizer(), fresh, layers, phase(startFrom.step()).label());
        restoredFrom = "copies";
        out.println("resuming from a copy of the state after step " + state.step());
      } else {
        Optional<Checkpoint> latest = store.latestValid(out::println);
        if (latest.isPresent()) {
          state = TrainingState.restore(latest.get(), s.lora(), s.optimizer(), fresh, layers);
          restoredFrom = "checkpoint";
          out.println("resuming from " + latest.get().dir() + " (step " + state.step() + ")");
        }
      }
      if (committed > state.step()) {
        out.println(
            "the journal has step "
                + committed
                + "; steps "
                + (state.step() + 1)
                + ".."
                + committed
                + " are computed again from the "
                + restoredFrom);
      }
      if (state.quant() != null) {
        long every = job.quantization().checkEvery();
        out.println(
            "frozen base linear layers held as: "
                + state.quant().summary()
                + (every > 0
                    ? "; quantization check at step 0 and every " + every + " steps"
                    : "; no quantization checks"));
      }
      long resumedAt = state.step();
      Replan pendingReplan = replan;
      BatchPlan plan =
          new BatchPlan(s.train().size(), job.batch().global(), job.data().shuffle(), job.seed());
      ProgressReporter progress = new ProgressReporter(total, state.step(), out, terminal);
      Evaluator.Result last = null;
      try (MetricsLog metrics =
              MetricsLog.open(job.output().resolve("metrics.jsonl"), state.step());
          TensorBoardWriter tb = TensorBoardWriter.open(job.output().resolve("tb"))) {
        if (observer != null && state.step() > 0) {
          observer.resumed(
              state.step(),
              total,
              MetricsLog.lossAt(job.output().resolve("metrics.jsonl"), state.step())
                  .orElse(Double.NaN));
        }
        try (PhaseModel models = new PhaseModel(s, state.quant())) {
          StepOutputs outputs = new StepOutputs();
          if (state.step() == 0 && s.eval() != null)
            last = evaluate(s, models.get(phase(0)), 0, outputs);
          if (state.step() == 0 && quantCheckDue(0))
            quantCheck(s, models.get(phase(0)), state.quant(), 0, outputs, null);
          outputs.writeTo(metrics, tb);
          for (long step = state.step(); step < total; step++) {
            ComputeDtype dtype = phase(step);
            CausalLm model = models.get(dtype);
            state = step(s, model, plan, state, step, total, dtype, outputs, progress);
            if (pendingReplan != null) {
              outputs.line(
                  pendingReplan.event(
                      newPlan, restoredFrom, committed, resumedAt, System.currentTimeMillis()));
              pendingReplan = null;
            }
            boolean end = step + 1 == total;
            if (s.eval() != null && ((step + 1) % job.eval().every() == 0 || end)) {
              last = evaluate(s, model, step + 1, outputs);
              progress.message(
                  String.format(
                      "eval at step %d: loss %.4f%s",
                      step + 1,
                      last.loss(),
                      Double.isNaN(last.exactMatch())
                          ? ""
                          : String.format(", exact match %.1f%%", 100 * last.exactMatch())));
            }
            if (state.quant() != null && quantCheckDue(step + 1))
              quantCheck(s, model, state.quant(), step + 1, outputs, progress);
            if (observer != null) {
              if (observer.keepsCopies()) observer.keep(state.copy(s.lora(), s.optimizer()));
              observer.stepDone(step + 1, total, lastLoss, lastTokensPerS);
              if (!observer.commit(step + 1)) {
                // the step's outputs and state are dropped: the journal does not have it
                progress.message("step " + (step + 1) + " was not committed; stopping");
                stopped = true;
                break;
              }
            }
            outputs.writeTo(metrics, tb);
            boolean saved = (step + 1) % job.checkpoint().every() == 0 || end;
            if (saved) state.save(store, s.lora(), s.optimizer());
            if (observer != null) {
              if (!end && observer.stopRequested()) {
                if (!saved) state.save(store, s.lora(), s.optimizer());
                progress.message("stopped after step " + (step + 1) + " on request");
                stopped = true;
                break;
              }
            }
          }
        }
        progress.finish();
      }
      if (stopped) return last;
      s.lora()
          .writePeft(job.output().resolve("adapter"), job.lora().dropout(), job.model().toString());
      out.println("adapter written to " + job.output().resolve("adapter"));
      return last;
    }
  }

  private TrainingState step(
      TrainingSetup s,
      CausalLm model,
      BatchPlan plan,
      TrainingState state,
      long step,
      long total,
      ComputeDtype dtype,
      StepOutputs outputs,
      ProgressReporter progress) {
    int[] indices = plan.step(step);
    List<Batch> micro = new ArrayList<>();
    for (int i = 0; i < indices.length; i += job.batch().micro()) {
      List<Example> rows = new ArrayList<>();
      for (int j = i; j < i + job.batch().micro(); j++) rows.add(s.train().get(indices[j]));
      micro.add(Batch.of(rows, job.batch().seqLen(), s.padId()));
    }
    double lr =
        job.optimizer().lr()
            * LrSchedule.multiplier(
                job.optimizer().schedule(), step, total, job.optimizer().warmupSteps());
    boolean fp16 = dtype == ComputeDtype.FP16;
    double scale = fp16 ? state.scaler().scale() : 1.0;
    long t0 = System.nanoTime();
    model.lendLora(s.lora().weights(), job.lora().dropout());
    // dropout masks are a function of (seed, step): a resumed run repeats them
    long stepSeed = job.seed() * 1_000_003L + step;
    TrainStep.Result r =
        TrainStep.run(
            model,
            s.lora(),
            s.optimizer(),
            micro,
            lr,
            job.optimizer().maxGradNorm(),
            scale,
            stepSeed,
            job.gradientCheckpointing());
    double seconds = (System.nanoTime() - t0) / 1e9;
    LossScaler scaler = fp16 ? state.scaler().update(r.skipped()) : state.scaler();
    Map<String, Object> m =
        MetricsLog.stepLine(
            step + 1,
            r.loss(),
            lr,
            r.gradNorm(),
            r.tokens(),
            r.tokens() / seconds,
            dtype.label(),
            scale,
            r.skipped());
    m.put("mem_bytes", ResidentMemory.bytes());
    m.put("peak_mem_bytes", ResidentMemory.peakBytes());
    outputs.line(m);
    for (String k : List.of("loss", "lr", "grad_norm", "tokens_per_s", "loss_scale", "mem_bytes")) {
      outputs.scalar("train/" + k, step + 1, ((Number) m.get(k)).doubleValue());
    }
    progress.update(step + 1, r.loss(), r.tokens() / seconds);
    lastLoss = r.loss();
    lastTokensPerS = r.tokens() / seconds;
    return new TrainingState(step + 1, scaler, dtype.label(), state.quant());
  }

  private boolean quantCheckDue(long step) {
    long every = job.quantization().checkEvery();
    return job.quantization().enabled() && every > 0 && step % every == 0;
  }

  /** The quantization-error check at {@code step}: measures, decides, applies, reports. */
  private void quantCheck(
      TrainingSetup s,
      CausalLm model,
      QuantState quant,
      long step,
      StepOutputs outputs,
      ProgressReporter progress) {
    Batch calibration = QuantCheck.calibration(job, s.train(), s.padId());
    model.lendLora(s.lora().weights(), 0.0);
    QuantCheck.Report r =
        QuantCheck.run(
            model,
            new WeightReader(s.model().weights(), ComputeDtype.FP32),
            calibration,
            quant,
            job.quantization().policy());
    String line = QuantCheck.record(r, step, outputs);
    if (progress != null) progress.message(line);
    else out.println(line);
  }

  private Evaluator.Result evaluate(
      TrainingSetup s, CausalLm model, long step, StepOutputs outputs) {
    {
      model.lendLora(s.lora().weights(), 0.0);
      Evaluator.Result r =
          Evaluator.run(
              model,
              s.eval(),
              job.batch().micro(),
              job.batch().seqLen(),
              s.padId(),
              s.tokenizer(),
              job.eval().maxNewTokens(),
              s.eos());
      Evaluator.record(r, step, outputs);
      return r;
    }
  }

  /** The compute dtype of 0-based step {@code step}: FP32 during warm-up, then the job's mode. */
  ComputeDtype phase(long step) {
    return ComputeDtype.parse(job.precision().modeAt(step));
  }

  /**
   * The frozen base model in the dtype of the current phase. When the FP32 warm-up ends the weights
   * are read again in the lower dtype (memory-mapped, so this costs a copy, not a disk read); the
   * FP32 LoRA masters carry over.
   */
  private static final class PhaseModel implements AutoCloseable {
    private final TrainingSetup setup;
    private final QuantState quant;
    private ComputeDtype dtype;
    private CausalLm model;

    PhaseModel(TrainingSetup setup, QuantState quant) {
      this.setup = setup;
      this.quant = quant;
    }

    CausalLm get(ComputeDtype wanted) throws IOException {
      if (wanted != dtype) {
        close();
        model = setup.loadModel(wanted, quant);
        dtype = wanted;
      }
      return model;
    }

    @Override
    public void close() {
      if (model != null) model.close();
      model = null;
      dtype = null;
    }
  }
}
