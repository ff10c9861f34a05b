package dev.troupe.pipeline.train;

/**
 * Dynamic loss scaling for fp16 with torch.cuda.amp.GradScaler's semantics: start at 65536; after a
 * step whose gradients hold inf or NaN, skip the update and halve the scale; after 2000 consecutive
 * finite steps, double it. A plain value: the trainer keeps it in checkpoints.
 */
public record LossScaler(double scale, int growthTracker) {
  public static final double INITIAL_SCALE = 65536.0;
  public static final double GROWTH_FACTOR = 2.0;
  public static final double BACKOFF_FACTOR = 0.5;
  public static final int GROWTH_INTERVAL = 2000;

  public static LossScaler initial() {
    return new LossScaler(INITIAL_SCALE, 0);
  }

  /** The scaler after a step whose unscaled gradients were finite, or not. */
  public LossScaler update(boolean foundInfOrNan) {
    if (foundInfOrNan) return new LossScaler(scale * BACKOFF_FACTOR, 0);
    int tracker = growthTracker + 1;
    return tracker >= GROWTH_INTERVAL
        ? new LossScaler(scale * GROWTH_FACTOR, 0)
        : new LossScaler(scale, tracker);
  }
}
