package dev.troupe.coordinator;

import dev.troupe.device.RankProtocol;
import dev.troupe.pipeline.checkpoint.CheckpointStore;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.lora.PeftAdapter;
import dev.troupe.pipeline.metrics.MetricsLog;
import dev.troupe.pipeline.metrics.StepOutputs;
import dev.troupe.pipeline.metrics.TensorBoardWriter;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.train.LossScaler;
import dev.troupe.pipeline.train.TrainingState;
import java.io.IOException;
import java.util.Collection;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * What a run over several devices ({@link PlanRun}) writes on the coordinator's node, in the
 * formats the one-device trainer writes: {@code metrics.jsonl}, TensorBoard scalars, checkpoints
 * and, at the end, the PEFT adapter.
 */
final class RunOutputs implements AutoCloseable {
  /** The training scalars of a step's metrics line that also go to TensorBoard. */
  private static final List<String> SCALARS =
      List.of("loss", "lr", "grad_norm", "tokens_per_s", "loss_scale");

  private final JobConfig job;
  private final CheckpointStore store;
  private final MetricsLog metrics;
  private final TensorBoardWriter tb;

  private RunOutputs(
      JobConfig job, CheckpointStore store, MetricsLog metrics, TensorBoardWriter tb) {
    this.job = job;
    this.store = store;
    this.metrics = metrics;
    this.tb = tb;
  }

  /**
   * Opens the job's metrics log (lines after step {@code step}, a resumed run's, are dropped as the
   * one-device trainer drops them) and TensorBoard folder in its output folder.
   */
  static RunOutputs open(JobConfig job, CheckpointStore store, long step) throws IOException {
    MetricsLog metrics = MetricsLog.open(job.output().resolve("metrics.jsonl"), step);
    try {
      return new RunOutputs(
          job, store, metrics, TensorBoardWriter.open(job.output().resolve("tb")));
    } catch (IOException | RuntimeException e) {
      metrics.close();
      throw e;
    }
  }

  /** Step {@code step}'s metrics line, and its training scalars to TensorBoard. */
  void step(long step, Map<String, Object> line) throws IOException {
    metrics.write(line);
    for (String k : SCALARS) tb.scalar("train/" + k, step, ((Number) line.get(k)).doubleValue());
  }

  /** An event line ({@code replan}). */
  void event(Map<String, Object> line) throws IOException {
    metrics.write(line);
  }

  /** An eval's or a quantization check's lines and scalars. */
  void write(StepOutputs outputs) throws IOException {
    outputs.writeTo(metrics, tb);
  }

  /**
   * A checkpoint after {@code step} steps from the trainable state of the first rank of every stage
   * ({@code states}), and where {@code adapterToo} (the run's end) the PEFT adapter.
   */
  void save(
      long step,
      LossScaler scaler,
      String precision,
      Collection<RankProtocol.State> states,
      QuantState quant,
      boolean adapterToo)
      throws IOException {
    SortedMap<String, TensorData> adapter = new TreeMap<>();
    SortedMap<String, TensorData> moments = new TreeMap<>();
    long optimizerStep = 0;
    for (RankProtocol.State s : states) {
      optimizerStep = s.optimizerStep();
      s.tensors()
          .forEach(
              (name, t) ->
                  (name.startsWith("exp_avg") ? moments : adapter).put(name, t.toTensorData()));
    }
    TrainingState.save(store, step, scaler, precision, optimizerStep, adapter, moments, quant);
    if (!adapterToo) return;
    EnumSet<LoraTarget> targets = EnumSet.noneOf(LoraTarget.class);
    for (String t : job.lora().targets()) targets.add(LoraTarget.fromModuleName(t));
    PeftAdapter.write(
        job.output().resolve("adapter"),
        job.lora().r(),
        job.lora().alpha(),
        job.lora().dropout(),
        targets,
        adapter,
        job.model().toString());
  }

  @Override
  public void close() throws IOException {
    try {
      metrics.close();
    } finally {
      tb.close();
    }
  }
}
