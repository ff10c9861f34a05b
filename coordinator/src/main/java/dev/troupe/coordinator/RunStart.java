package dev.troupe.coordinator;

import dev.troupe.device.RankProtocol;
import dev.troupe.persistence.TensorBytes;
import dev.troupe.pipeline.checkpoint.Checkpoint;
import dev.troupe.pipeline.checkpoint.CheckpointStore;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.metrics.MetricsLog;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.train.LossScaler;
import dev.troupe.pipeline.train.TrainingState;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Where a plan run starts from: the copies of the trainable state that devices keep, the newest
 * checkpoint, or the start. {@code source} is {@code copies}, {@code checkpoint} or {@code start}
 * (the replan line's {@code restored_from}); {@code tensors} are keyed as a checkpoint keeps them;
 * {@code quantization} is the layers' formats ({@code QuantState}'s JSON; empty for none saved).
 */
record RunStart(
    String source,
    long step,
    SortedMap<String, TensorData> tensors,
    long optimizerStep,
    LossScaler scaler,
    String quantization) {

  /**
   * The copies among {@code all} that cover every one of {@code layers} layers after the job's last
   * committed step {@code committed}; empty where there are none. A step is journaled before its
   * metrics line is written: a coordinator lost in between leaves the journal one step ahead of
   * {@code metrics}, and that step is computed again from the copies before it (its commit is then
   * only acknowledged).
   */
  static Optional<RunStart> fromCopies(
      List<RankProtocol.Copy> all, long committed, Path metrics, int layers) {
    long from = committed;
    try {
      if (committed > 0 && MetricsLog.lossAt(metrics, committed).isEmpty()) from = committed - 1;
    } catch (IOException e) {
      // unreadable: the run's own open of metrics.jsonl reports it
    }
    Optional<RankProtocol.Copy> c = RankProtocol.Copy.covering(all, from, layers);
    if (c.isEmpty() && from != committed) {
      from = committed; // no copies of the step before: the step's line stays missing
      c = RankProtocol.Copy.covering(all, from, layers);
    }
    if (c.isEmpty()) return Optional.empty();
    SortedMap<String, TensorData> tensors = new TreeMap<>();
    c.get().tensors().forEach((k, v) -> tensors.put(k, v.toTensorData()));
    return Optional.of(
        new RunStart(
            "copies",
            from,
            tensors,
            c.get().optimizerStep(),
            new LossScaler(c.get().lossScale(), c.get().growthTracker()),
            c.get().quantization()));
  }

  /**
   * The newest valid checkpoint in {@code store} ({@code warn} hears of the invalid ones skipped),
   * else the start, with loss scaler {@code fresh}.
   */
  static RunStart fromCheckpoint(CheckpointStore store, Consumer<String> warn, LossScaler fresh)
      throws IOException {
    Optional<Checkpoint> latest = store.latestValid(warn);
    if (latest.isEmpty()) return new RunStart("start", 0, new TreeMap<>(), 0, fresh, "");
    TrainingState.Saved saved = TrainingState.read(latest.get());
    return new RunStart(
        "checkpoint",
        saved.state().step(),
        saved.tensors(),
        saved.optimizerStep(),
        saved.state().scaler(),
        saved.quantization());
  }

  /** The tensors of layers {@code [firstLayer, endLayer)}: one stage's part. */
  Map<String, TensorBytes> layers(int firstLayer, int endLayer) {
    Map<String, TensorBytes> mine = new LinkedHashMap<>();
    tensors.forEach(
        (name, t) -> {
          int layer = layerOf(name);
          if (layer >= firstLayer && layer < endLayer) mine.put(name, TensorBytes.of(t));
        });
    return mine;
  }

  /**
   * The formats to hold {@code layers} layers of {@code job} in: those saved, or the job's base for
   * all at the start; null where the job's base is not quantized.
   *
   * @throws IOException where the saved formats do not read
   */
  QuantState quant(JobConfig job, int layers) throws IOException {
    if (!job.quantization().enabled()) return null;
    return quantization.isEmpty()
        ? QuantState.initial(layers, job.quantization().base())
        : QuantState.fromJson(quantization, layers, "the " + source + "'s quantization state");
  }

  private static final Pattern LAYER = Pattern.compile("\\.layers\\.(\\d+)\\.");

  private static int layerOf(String name) {
    Matcher m = LAYER.matcher(name);
    return m.find() ? Integer.parseInt(m.group(1)) : -1;
  }
}
