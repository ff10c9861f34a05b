package dev.troupe.pipeline.job;

import java.util.Objects;

/**
 * The compute precision ({@code precision { ... }}).
 *
 * @param mode {@code fp32}, {@code bf16} or {@code fp16}
 * @param fp32WarmupSteps optimizer steps run in fp32 before switching to a 16-bit mode
 * @param initialLossScale fp16's starting loss scale (GradScaler's init_scale)
 */
public record PrecisionSettings(String mode, long fp32WarmupSteps, double initialLossScale) {
  public PrecisionSettings {
    Objects.requireNonNull(mode, "mode");
  }

  /**
   * The precision 0-based optimizer step {@code step} runs in: {@code fp32} during the warm-up,
   * then {@link #mode}. The one place this rule lives: the single-process trainer, the pipeline's
   * stage workers and the coordinator all ask here.
   */
  public String modeAt(long step) {
    return step < fp32WarmupSteps ? "fp32" : mode;
  }
}
