package dev.troupe.coordinator;

import dev.troupe.device.RankProtocol;
import dev.troupe.pipeline.dist.PipelineQuantCheck;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.job.QuantizationSettings;
import dev.troupe.pipeline.metrics.StepOutputs;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.train.QuantCheck;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The driver's side of the quantization-error check over a plan ({@link PlanRun}): when a check is
 * due, the policy's decision for the whole model from every rank's measurements ({@link
 * PipelineQuantCheck#decide}), and the check's record once every rank holds the decided formats.
 * The driver sends and collects the messages; this holds what lies between them.
 */
final class RunQuantCheck {
  private final Plan plan;
  private final QuantState quant;
  private final QuantizationSettings settings;
  private long checkedAt = -1;
  private Map<Integer, Object> measured = Map.of();
  private List<QuantCheck.LayerReport> layers = List.of();

  /**
   * @param quant the layers' formats and calm counts, which {@link #decide} changes
   */
  RunQuantCheck(Plan plan, QuantState quant, QuantizationSettings settings) {
    this.plan = plan;
    this.quant = quant;
    this.settings = settings;
  }

  /** Whether a check is due after {@code step} steps and has not been made for that step yet. */
  boolean due(long step) {
    long every = settings.checkEvery();
    return every > 0 && step % every == 0 && checkedAt != step;
  }

  /**
   * Every rank's {@link RankProtocol.QuantMeasured}, by rank: the policy decides; returns the
   * formats every rank is to hold, as JSON.
   */
  String decide(Map<Integer, Object> answers) {
    measured = new HashMap<>(answers);
    layers = PipelineQuantCheck.decide(plan, r -> part(measured.get(r)), quant, settings.policy());
    return quant.toJson().toString();
  }

  /**
   * Every rank's {@link RankProtocol.QuantApplied}, by rank: the check's metrics line and scalars
   * go to {@code lines}; returns its one-line summary. The check counts as made for {@code step}.
   */
  String record(Map<Integer, Object> applied, long step, StepOutputs lines) {
    QuantCheck.Report r =
        PipelineQuantCheck.report(
            plan, layers, rank -> part(measured.get(rank)), rank -> part(applied.get(rank)));
    checkedAt = step;
    return QuantCheck.record(r, step, lines);
  }

  private static PipelineQuantCheck.Part part(Object answer) {
    return switch (answer) {
      case RankProtocol.QuantMeasured m ->
          new PipelineQuantCheck.Part(m.layers(), m.lossSum(), m.tokens(), m.frozenBytes());
      case RankProtocol.QuantApplied a ->
          new PipelineQuantCheck.Part(List.of(), a.lossSum(), a.tokens(), a.frozenBytes());
      default -> throw new IllegalStateException("not a quantization answer: " + answer);
    };
  }
}
