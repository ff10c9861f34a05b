package dev.troupe.pipeline.dist;

import java.util.List;

/**
 * What the driver of a distributed step decides between its two halves, from every rank's {@link
 * StageWorker.Report}: the step's loss, the global gradient norm (each stage counted once: its
 * shards and replicas hold the same summed gradients), whether to skip the update (inf/NaN, or no
 * label tokens) and the clip factor, as {@code torch.nn.utils.clip_grad_norm_} computes it.
 *
 * @param loss mean cross-entropy over the step's label tokens
 * @param gradNorm global L2 norm of the unscaled gradients before clipping
 * @param skipped the gradients held inf or NaN
 * @param update whether the optimizer runs (finite gradients and at least one label token)
 * @param clip the factor the gradients are multiplied by (1: no clipping)
 */
public record StepDecision(
    double loss, double gradNorm, long tokens, boolean skipped, boolean update, double clip) {

  /** Decides from the reports of all {@code plan.worldSize()} ranks of one step. */
  public static StepDecision of(Plan plan, List<StageWorker.Report> reports, double maxGradNorm) {
    if (reports.size() != plan.worldSize()) {
      throw new IllegalArgumentException(
          reports.size() + " reports for a plan of " + plan.worldSize() + " ranks");
    }
    double lossSum = 0;
    double squares = 0;
    long tokens = reports.get(0).tokens();
    for (StageWorker.Report r : reports) {
      if (r.stage() == plan.pp() - 1 && r.shard() == 0) lossSum += r.lossSum();
      if (r.shard() == 0 && r.replica() == 0) squares += r.gradSquares();
    }
    double norm = Math.sqrt(squares);
    boolean finite = Double.isFinite(norm);
    double clip = 1;
    if (finite && maxGradNorm > 0) clip = Math.min(1, maxGradNorm / (norm + 1e-6));
    return new StepDecision(
        tokens > 0 ? lossSum / tokens : 0.0, norm, tokens, !finite, finite && tokens > 0, clip);
  }
}
