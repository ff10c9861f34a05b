package dev.troupe.pipeline.job;

import java.util.Objects;

/**
 * The AdamW optimizer and its learning-rate schedule ({@code optimizer { ... }}).
 *
 * @param lr the peak learning rate
 * @param beta1 the decay of the first-moment average
 * @param beta2 the decay of the second-moment average
 * @param eps the term added to the denominator for numerical stability
 * @param weightDecay the decoupled weight decay
 * @param schedule the schedule after warmup
 * @param warmupSteps optimizer steps of linear warmup from zero to {@code lr}
 * @param maxGradNorm the global gradient norm to clip to; 0 for no clipping
 */
public record OptimizerSettings(
    double lr,
    double beta1,
    double beta2,
    double eps,
    double weightDecay,
    Schedule schedule,
    long warmupSteps,
    double maxGradNorm) {
  public OptimizerSettings {
    Objects.requireNonNull(schedule, "schedule");
  }
}
