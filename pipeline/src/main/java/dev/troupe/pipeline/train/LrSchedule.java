package dev.troupe.pipeline.train;

import dev.troupe.pipeline.job.Schedule;

/**
 * Learning-rate multipliers exactly as Hugging Face transformers defines them (a LambdaLR stepped
 * after every optimizer step), for 0-based step {@code s} of {@code total} with {@code warmup}
 * warm-up steps:
 *
 * <ul>
 *   <li>constant: {@code s < W ? s / max(1, W) : 1}
 *   <li>linear: {@code s < W ? s / max(1, W) : max(0, (N - s) / max(1, N - W))}
 *   <li>cosine: {@code s < W ? s / max(1, W) : max(0, 0.5 (1 + cos(pi (s - W) / max(1, N - W))))}
 * </ul>
 *
 * With W &gt; 0 the first step therefore has learning rate 0, as in transformers.
 */
public final class LrSchedule {
  private LrSchedule() {}

  public static double multiplier(Schedule schedule, long s, long total, long warmup) {
    if (s < warmup) return (double) s / Math.max(1, warmup);
    return switch (schedule) {
      case CONSTANT -> 1.0;
      case LINEAR -> Math.max(0.0, (double) (total - s) / Math.max(1, total - warmup));
      case COSINE -> {
        double progress = (double) (s - warmup) / Math.max(1, total - warmup);
        yield Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * progress)));
      }
    };
  }
}
