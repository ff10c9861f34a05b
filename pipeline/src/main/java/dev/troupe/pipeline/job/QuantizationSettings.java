package dev.troupe.pipeline.job;

import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantPolicy;
import java.util.Objects;

/**
 * How the frozen base is held ({@code quantization { ... }}).
 *
 * @param base the format of every decoder linear layer at the start: none, int8, int4 or nf4
 * @param checkEvery steps between quantization-error checks (and one at step 0); 0 = never check
 * @param calibrationSequences training examples (the first ones in file order) the check runs
 * @param policy thresholds and memory budget of the promotion/demotion policy
 */
public record QuantizationSettings(
    QuantFormat base, long checkEvery, int calibrationSequences, QuantPolicy.Settings policy) {
  public QuantizationSettings {
    Objects.requireNonNull(base, "base");
    Objects.requireNonNull(policy, "policy");
  }

  /** No quantization. */
  public static QuantizationSettings none() {
    return new QuantizationSettings(
        QuantFormat.NONE, 0, 4, new QuantPolicy.Settings(0.05, 0.005, 3, 0, QuantFormat.NF4));
  }

  public boolean enabled() {
    return base != QuantFormat.NONE;
  }
}
