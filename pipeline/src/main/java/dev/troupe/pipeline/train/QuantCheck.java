package dev.troupe.pipeline.train;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraKey;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.metrics.StepOutputs;
import dev.troupe.pipeline.model.AllReduce;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.ModelFormatException;
import dev.troupe.pipeline.model.WeightReader;
import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantPolicy;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.quant.QuantizedTensor;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * The quantization-error check: runs a fixed calibration batch through the model (adapters
 * attached) and, for every decoder linear layer, measures the relative error {@code ||x Ŵ^T − x
 * W^T|| / ||x W^T||} of its output on the inputs it actually sees, where {@code W} are the original
 * weights read again from the model's files (not kept in memory) and {@code Ŵ} the weights as held
 * now; likewise the error one level lower. {@link QuantPolicy} decides, the decisions are applied
 * (re-quantizing from the original weights), and the calibration loss is measured before and after.
 */
public final class QuantCheck {
  private QuantCheck() {}

  /** One layer's measurement and decision. */
  public record LayerReport(
      String name,
      QuantFormat format,
      double error,
      double lowerError,
      QuantFormat to,
      String action) {}

  /** What a check found and did. */
  public record Report(
      List<LayerReport> layers,
      double lossBefore,
      double lossAfter,
      long bytesBefore,
      long bytesAfter) {
    public long changes() {
      return layers.stream().filter(l -> l.format() != l.to()).count();
    }
  }

  /**
   * One linear layer measured on one shard: squared norms of the reference output {@code x W^T}, of
   * its error at the format held now and one level lower (NaN at the lowest), and the bytes the
   * shard's weight holds now and would hold one level lower. Squares, so that the shards of a layer
   * sum to the whole layer ({@link #plus}).
   *
   * @param target the module name ({@code q_proj}, ...)
   */
  public record Measure(
      int layer,
      String target,
      String format,
      double referenceSquares,
      double errorSquares,
      double lowerSquares,
      long bytes,
      long lowerBytes) {

    public LoraKey key() {
      return new LoraKey(layer, LoraTarget.fromModuleName(target));
    }

    /** This shard's measure and {@code o}'s, another shard of the same layer. */
    public Measure plus(Measure o) {
      return new Measure(
          layer,
          target,
          format,
          referenceSquares + o.referenceSquares,
          errorSquares + o.errorSquares,
          lowerSquares + o.lowerSquares,
          bytes + o.bytes,
          lowerBytes + o.lowerBytes);
    }

    public double error() {
      return ratio(errorSquares);
    }

    public double lowerError() {
      return ratio(lowerSquares);
    }

    private double ratio(double squares) {
      return referenceSquares > 0 ? Math.sqrt(squares / referenceSquares) : Math.sqrt(squares);
    }
  }

  /**
   * Checks every layer of {@code model} (a whole model), applies the policy's decisions to {@code
   * model} and {@code state}, and returns what it did.
   */
  public static Report run(
      CausalLm model,
      WeightReader original,
      Batch calibration,
      QuantState state,
      QuantPolicy.Settings settings) {
    List<Measure> measured = new ArrayList<>();
    long bytesBefore = model.frozenWeightBytes();
    double lossBefore;
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      Tensor ids =
          Torch.fromLongs(calibration.inputIds(), calibration.rows(), calibration.seqLen());
      lossBefore = loss(model, calibration);
      model.captureLinearInputs(
          model.embed(ids),
          AllReduce.NONE,
          (key, x) -> measured.add(measure(model, original, key, x, settings.fourBit(), null)));
    }
    List<LayerReport> report = decide(measured, state, settings);
    boolean changed = false;
    for (LayerReport l : report) {
      if (l.format() == l.to()) continue;
      LoraKey k = QuantState.key(l.name());
      try (PointerScope scope = new PointerScope()) {
        model.requantize(k, read(original, k, model), l.to());
      }
      changed = true;
    }
    double lossAfter = lossBefore;
    if (changed) {
      try (PointerScope scope = new PointerScope();
          NoGradGuard noGrad = new NoGradGuard()) {
        lossAfter = loss(model, calibration);
      }
    }
    return new Report(report, lossBefore, lossAfter, bytesBefore, model.frozenWeightBytes());
  }

  /**
   * The policy's decisions from {@code measured} (every layer of the model, each summed over its
   * shards, in order): {@code state}'s calm counts and formats are updated, and each layer's report
   * returned. The decisions are not applied to any model here.
   */
  public static List<LayerReport> decide(
      List<Measure> measured, QuantState state, QuantPolicy.Settings settings) {
    List<QuantPolicy.Layer> layers = new ArrayList<>();
    for (Measure e : measured) {
      LoraKey k = e.key();
      int calm = e.lowerError() < settings.demoteBelow() ? state.calm(k) + 1 : 0;
      state.update(k, state.format(k), calm);
      layers.add(
          new QuantPolicy.Layer(
              QuantState.name(k),
              state.format(k),
              e.error(),
              e.lowerError(),
              calm,
              e.bytes(),
              e.lowerBytes()));
    }
    List<QuantPolicy.Decision> decisions = QuantPolicy.decide(settings, layers);
    List<LayerReport> report = new ArrayList<>();
    for (int i = 0; i < measured.size(); i++) {
      LoraKey k = measured.get(i).key();
      QuantPolicy.Decision d = decisions.get(i);
      if (d.changes()) state.update(k, d.to(), 0);
      report.add(
          new LayerReport(
              d.name(),
              d.from(),
              layers.get(i).error(),
              measured.get(i).lowerError(),
              d.to(),
              d.action()));
    }
    return report;
  }

  /**
   * Measures one linear layer of {@code model} (its shard) on its input {@code x}. {@code
   * tensorParallel}: the layer's shards where the model is one shard of a row-parallel layer
   * (o_proj, down_proj), whose outputs are partial sums: they are summed over the shards first, and
   * only shard 0 counts the squares; null where the model is not sharded.
   */
  public static Measure measure(
      CausalLm model,
      WeightReader original,
      LoraKey key,
      Tensor x,
      QuantFormat fourBit,
      AllReduce tensorParallel) {
    try (PointerScope scope = new PointerScope()) {
      Tensor w = read(original, key, model);
      Tensor xf = x.to(ScalarType.Float).reshape(-1, x.size(-1));
      Tensor reference = torch.linear(xf, w);
      Tensor error = torch.linear(xf, model.heldWeight(key, ScalarType.Float)).sub(reference);
      QuantFormat now = model.format(key);
      QuantFormat lower = now.demoted(fourBit);
      Tensor lowerError = null;
      long lowerBytes = model.weightBytes(key);
      if (lower != now) {
        try (QuantizedTensor q = QuantizedTensor.quantize(w, lower)) {
          lowerError = torch.linear(xf, q.dequantize(ScalarType.Float)).sub(reference);
          lowerBytes = q.bytes();
        }
      }
      boolean partial =
          tensorParallel != null && model.shard().isSharded() && !key.target().columnParallel();
      if (partial) {
        TensorVector parts = new TensorVector();
        parts.push_back(reference);
        parts.push_back(error);
        if (lowerError != null) parts.push_back(lowerError);
        Tensor all = torch.stack(parts);
        tensorParallel.sumInPlace(all);
        reference = all.select(0, 0);
        error = all.select(0, 1);
        if (lowerError != null) lowerError = all.select(0, 2);
      }
      boolean counts = !partial || model.shard().rank() == 0;
      return new Measure(
          key.layer(),
          key.target().moduleName(),
          now.label(),
          counts ? squares(reference) : 0,
          counts ? squares(error) : 0,
          lowerError == null ? Double.NaN : counts ? squares(lowerError) : 0,
          model.weightBytes(key),
          lowerBytes);
    }
  }

  private static double squares(Tensor t) {
    double n = torch.linalg_vector_norm(t).item_double();
    return n * n;
  }

  /**
   * The original FP32 weight of one linear layer, read from the model's files: the part {@code
   * model}'s shard holds (rows of a column-parallel layer, columns of a row-parallel one).
   */
  public static Tensor read(WeightReader original, LoraKey key, CausalLm model) {
    var c = model.config();
    long q = (long) c.numHeads() * c.headDim();
    long kv = (long) c.numKvHeads() * c.headDim();
    long h = c.hiddenSize();
    long inter = c.intermediateSize();
    long[] shape =
        switch (key.target()) {
          case Q_PROJ -> new long[] {q, h};
          case K_PROJ, V_PROJ -> new long[] {kv, h};
          case O_PROJ -> new long[] {h, q};
          case GATE_PROJ, UP_PROJ -> new long[] {inter, h};
          case DOWN_PROJ -> new long[] {h, inter};
        };
    String name =
        "model.layers."
            + key.layer()
            + "."
            + key.target().parent()
            + "."
            + key.target().moduleName()
            + ".weight";
    int dim = key.target().columnParallel() ? 0 : 1;
    try {
      return original.slice(
          name, shape, dim, model.shard().start(shape[dim]), model.shard().length(shape[dim]));
    } catch (ModelFormatException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Writes check {@code r} at {@code step} to {@code outputs}: the {@code quant_check} line of
   * metrics.jsonl and the {@code quant/*} scalars; returns a one-line summary for the console.
   */
  public static String record(Report r, long step, StepOutputs outputs) {
    List<Map<String, Object>> layers = new ArrayList<>();
    for (LayerReport l : r.layers()) {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("name", l.name());
      m.put("format", l.format().label());
      m.put("error", l.error());
      m.put("lower_error", Double.isNaN(l.lowerError()) ? null : l.lowerError());
      m.put("to", l.to().label());
      m.put("action", l.action());
      layers.add(m);
      outputs.scalar("quant/error/" + l.name(), step, l.error());
    }
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("event", "quant_check");
    m.put("step", step);
    m.put("calib_loss", r.lossBefore());
    m.put("calib_loss_after", r.lossAfter());
    m.put("calib_loss_delta", r.lossAfter() - r.lossBefore());
    m.put("frozen_bytes", r.bytesBefore());
    m.put("frozen_bytes_after", r.bytesAfter());
    m.put("changes", r.changes());
    m.put("layers", layers);
    outputs.line(m);
    outputs.scalar("quant/changes", step, r.changes());
    outputs.scalar("quant/frozen_mib", step, r.bytesAfter() / (1024.0 * 1024.0));
    outputs.scalar("quant/calib_loss_delta", step, r.lossAfter() - r.lossBefore());
    double worst = r.layers().stream().mapToDouble(LayerReport::error).max().orElse(0);
    return String.format(
        "quantization check at step %d: worst layer error %.4f, %d changed, frozen weights"
            + " %.1f MiB",
        step, worst, r.changes(), r.bytesAfter() / (1024.0 * 1024.0));
  }

  /**
   * The calibration batch: the first {@code calibration-sequences} training examples as one batch.
   */
  public static Batch calibration(
      dev.troupe.pipeline.job.JobConfig job,
      dev.troupe.pipeline.data.JsonlDataset train,
      long padId) {
    List<dev.troupe.pipeline.data.Example> rows = new ArrayList<>();
    int n = Math.min(job.quantization().calibrationSequences(), train.size());
    for (int i = 0; i < n; i++) rows.add(train.get(i));
    return Batch.of(rows, job.batch().seqLen(), padId);
  }

  /** Mean loss over the calibration batch's label tokens. */
  private static double loss(CausalLm model, Batch b) {
    Tensor ids = Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen());
    Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
    Tensor logits = model.logits(model.forwardLayers(model.embed(ids), AllReduce.NONE));
    double sum = CausalLmLoss.sum(logits, labels).item_double();
    return b.labelTokens() > 0 ? sum / b.labelTokens() : 0;
  }
}
