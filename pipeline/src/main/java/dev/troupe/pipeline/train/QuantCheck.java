package dev.troupe.pipeline.train;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraKey;
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
   * Checks every layer of {@code model} (a whole model), applies the policy's decisions to {@code
   * model} and {@code state}, and returns what it did.
   */
  public static Report run(
      CausalLm model,
      WeightReader original,
      Batch calibration,
      QuantState state,
      QuantPolicy.Settings settings) {
    Map<LoraKey, double[]> errors = new LinkedHashMap<>();
    long bytesBefore = model.frozenWeightBytes();
    double lossBefore;
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      Tensor ids =
          Torch.fromLongs(calibration.inputIds(), calibration.rows(), calibration.seqLen());
      lossBefore = loss(model, calibration);
      model.captureLinearInputs(
          model.embed(ids),
          (key, x) -> {
            try (PointerScope inner = new PointerScope()) {
              errors.put(key, measure(model, original, key, x, settings.fourBit()));
            }
          });
    }
    List<QuantPolicy.Layer> layers = new ArrayList<>();
    List<LoraKey> keys = new ArrayList<>(errors.keySet());
    for (LoraKey k : keys) {
      double[] e = errors.get(k);
      int calm = e[1] < settings.demoteBelow() ? state.calm(k) + 1 : 0;
      state.update(k, state.format(k), calm);
      layers.add(
          new QuantPolicy.Layer(
              QuantState.name(k),
              state.format(k),
              e[0],
              e[1],
              calm,
              model.weightBytes(k),
              (long) e[2]));
    }
    List<QuantPolicy.Decision> decisions = QuantPolicy.decide(settings, layers);
    List<LayerReport> report = new ArrayList<>();
    for (int i = 0; i < keys.size(); i++) {
      LoraKey k = keys.get(i);
      QuantPolicy.Decision d = decisions.get(i);
      if (d.changes()) {
        try (PointerScope scope = new PointerScope()) {
          model.requantize(k, read(original, k, model), d.to());
        }
        state.update(k, d.to(), 0);
      }
      report.add(
          new LayerReport(
              d.name(), d.from(), layers.get(i).error(), errors.get(k)[1], d.to(), d.action()));
    }
    double lossAfter = lossBefore;
    if (decisions.stream().anyMatch(QuantPolicy.Decision::changes)) {
      try (PointerScope scope = new PointerScope();
          NoGradGuard noGrad = new NoGradGuard()) {
        lossAfter = loss(model, calibration);
      }
    }
    return new Report(report, lossBefore, lossAfter, bytesBefore, model.frozenWeightBytes());
  }

  /** {error now, error one level lower (NaN at the lowest), bytes one level lower}. */
  private static double[] measure(
      CausalLm model, WeightReader original, LoraKey key, Tensor x, QuantFormat fourBit) {
    Tensor w = read(original, key, model);
    Tensor xf = x.to(ScalarType.Float).reshape(-1, x.size(-1));
    Tensor reference = torch.linear(xf, w);
    double norm = torch.linalg_vector_norm(reference).item_double();
    Tensor held = model.heldWeight(key, ScalarType.Float);
    double error = relative(torch.linear(xf, held), reference, norm);
    QuantFormat now = model.format(key);
    QuantFormat lower = now.demoted(fourBit);
    double lowerError = Double.NaN;
    long lowerBytes = model.weightBytes(key);
    if (lower != now) {
      try (QuantizedTensor q = QuantizedTensor.quantize(w, lower)) {
        lowerError = relative(torch.linear(xf, q.dequantize(ScalarType.Float)), reference, norm);
        lowerBytes = q.bytes();
      }
    }
    return new double[] {error, lowerError, lowerBytes};
  }

  private static double relative(Tensor y, Tensor reference, double norm) {
    double diff = torch.linalg_vector_norm(y.sub(reference)).item_double();
    return norm > 0 ? diff / norm : diff;
  }

  /** The original FP32 weight of one linear layer, read from the model's files. */
  private static Tensor read(WeightReader original, LoraKey key, CausalLm model) {
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
    try {
      return original.read(name, shape);
    } catch (ModelFormatException e) {
      throw new UncheckedIOException(e);
    }
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
