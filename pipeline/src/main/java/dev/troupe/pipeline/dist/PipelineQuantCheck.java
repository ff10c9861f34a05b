package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraKey;
import dev.troupe.pipeline.model.AllReduce;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.StageSpec;
import dev.troupe.pipeline.model.WeightReader;
import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantPolicy;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.train.CausalLmLoss;
import dev.troupe.pipeline.train.QuantCheck;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.IntFunction;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

/**
 * The quantization-error check ({@link QuantCheck}) through a plan's stages. The ranks measure, the
 * driver decides:
 *
 * <ol>
 *   <li>{@link #measure}: replica 0's pipeline runs the calibration batch forward without autograd,
 *       activations going to the next stage as in training; every rank measures the linear layers
 *       of its stage and shard against the original weights of its shard, read again from the
 *       model's files ({@link QuantCheck#measure}: a row-parallel layer's partial outputs are
 *       summed over the shards first). The last stage adds the calibration loss. The other replicas
 *       hold the same weights and measure nothing.
 *   <li>{@link #decide} (the driver): the shards of each layer are summed, {@link QuantPolicy}
 *       decides over the whole model, as on one device, and the driver's {@link QuantState} takes
 *       the outcome.
 *   <li>{@link #apply}: every rank re-quantizes the layers of its shard whose format changed, from
 *       the files; where any changed, replica 0 runs the calibration batch again for the loss
 *       after.
 * </ol>
 */
public final class PipelineQuantCheck {
  private final Plan plan;
  private final Plan.Rank rank;
  private final StageSpec stage;
  private final Transport transport;
  private final AllReduce tensorParallel;

  /**
   * One rank's part of a check: its layers' measures (empty outside replica 0, and after {@link
   * #apply}), the calibration loss summed and its label tokens (on replica 0's last stage; zeros
   * elsewhere), and the bytes its frozen weights hold.
   */
  public record Part(
      List<QuantCheck.Measure> layers, double lossSum, long tokens, long frozenBytes) {}

  PipelineQuantCheck(
      Plan plan, Plan.Rank rank, StageSpec stage, Transport transport, AllReduce tensorParallel) {
    this.plan = plan;
    this.rank = rank;
    this.stage = stage;
    this.transport = transport;
    this.tensorParallel = tensorParallel;
  }

  /** Measures this rank's layers of {@code m} (LoRA lent without dropout) after {@code step}. */
  Part measure(
      CausalLm m, WeightReader original, Batch calibration, QuantFormat fourBit, long step) {
    List<QuantCheck.Measure> layers = new ArrayList<>();
    if (rank.replica() != 0) return new Part(layers, 0, 0, m.frozenWeightBytes());
    double[] loss = {0, 0};
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      Tensor h = input(m, calibration, "qc/" + step);
      h =
          m.captureLinearInputs(
              h,
              tensorParallel,
              (key, x) ->
                  layers.add(QuantCheck.measure(m, original, key, x, fourBit, tensorParallel)));
      output(m, calibration, h, "qc/" + step, loss);
    }
    return new Part(layers, loss[0], (long) loss[1], m.frozenWeightBytes());
  }

  /**
   * Re-quantizes the layers of {@code m}'s stage whose format in {@code decided} differs from
   * {@code held} (from the files, this rank's shard of them), and measures the calibration loss
   * again where any layer of the model changed.
   */
  Part apply(
      CausalLm m,
      WeightReader original,
      Batch calibration,
      QuantState held,
      QuantState decided,
      long step) {
    boolean changed = false;
    for (LoraKey k : decided.keys()) {
      if (decided.format(k) == held.format(k)) continue;
      changed = true;
      if (k.layer() < stage.firstLayer() || k.layer() >= stage.endLayer()) continue;
      try (PointerScope scope = new PointerScope()) {
        m.requantize(k, QuantCheck.read(original, k, m), decided.format(k));
      }
    }
    double[] loss = {0, 0};
    if (changed && rank.replica() == 0) {
      try (PointerScope scope = new PointerScope();
          NoGradGuard noGrad = new NoGradGuard()) {
        Tensor h = input(m, calibration, "qc-after/" + step);
        h = m.forwardLayers(h, tensorParallel);
        output(m, calibration, h, "qc-after/" + step, loss);
      }
    }
    return new Part(List.of(), loss[0], (long) loss[1], m.frozenWeightBytes());
  }

  /**
   * The driver's decision from every rank's measure ({@code byRank}): the shards of each layer
   * summed, {@code state} updated (calm counts and formats); each layer's report, in order.
   */
  public static List<QuantCheck.LayerReport> decide(
      Plan plan, IntFunction<Part> byRank, QuantState state, QuantPolicy.Settings settings) {
    Map<String, QuantCheck.Measure> layers = new LinkedHashMap<>();
    for (int s = 0; s < plan.pp(); s++) {
      for (int t = 0; t < plan.tp(); t++) {
        for (QuantCheck.Measure e : byRank.apply(plan.rankOf(s, t, 0)).layers()) {
          layers.merge(e.layer() + "." + e.target(), e, QuantCheck.Measure::plus);
        }
      }
    }
    return QuantCheck.decide(new ArrayList<>(layers.values()), state, settings);
  }

  /**
   * The check's report from the layers' reports ({@link #decide}) and every rank's parts before
   * ({@code measured}) and after ({@code applied}) the decisions were applied.
   */
  public static QuantCheck.Report report(
      Plan plan,
      List<QuantCheck.LayerReport> layers,
      IntFunction<Part> measured,
      IntFunction<Part> applied) {
    double before = loss(plan, measured);
    boolean changed = layers.stream().anyMatch(l -> l.format() != l.to());
    return new QuantCheck.Report(
        layers,
        before,
        changed ? loss(plan, applied) : before,
        frozenBytes(plan, measured),
        frozenBytes(plan, applied));
  }

  /** The calibration loss (mean over label tokens): replica 0's last stage, shard 0. */
  private static double loss(Plan plan, IntFunction<Part> byRank) {
    Part p = byRank.apply(plan.rankOf(plan.pp() - 1, 0, 0));
    return p.tokens() > 0 ? p.lossSum() / p.tokens() : 0;
  }

  /** The bytes the frozen weights of one replica hold. */
  private static long frozenBytes(Plan plan, IntFunction<Part> byRank) {
    long bytes = 0;
    for (int s = 0; s < plan.pp(); s++) {
      for (int t = 0; t < plan.tp(); t++) bytes += byRank.apply(plan.rankOf(s, t, 0)).frozenBytes();
    }
    return bytes;
  }

  private Tensor input(CausalLm m, Batch b, String tag) {
    return stage.hasEmbedding()
        ? m.embed(Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen()))
        : Torch.handOver(transport.receive(previous(), tag));
  }

  /** The last stage's loss into {@code loss} (sum, tokens); elsewhere {@code h} on to the next. */
  private void output(CausalLm m, Batch b, Tensor h, String tag, double[] loss) {
    if (stage.hasHead()) {
      Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
      loss[0] = CausalLmLoss.sum(m.logits(h), labels).item_double();
      loss[1] = b.labelTokens();
    } else {
      transport.send(next(), tag, h);
    }
  }

  private int previous() {
    return plan.rankOf(rank.stage() - 1, rank.shard(), 0);
  }

  private int next() {
    return plan.rankOf(rank.stage() + 1, rank.shard(), 0);
  }
}
