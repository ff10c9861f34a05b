package dev.troupe.coordinator;

import dev.troupe.device.RankProtocol;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.dist.StageWorker;
import dev.troupe.pipeline.dist.StepDecision;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.metrics.MetricsLog;
import dev.troupe.pipeline.train.LossScaler;
import dev.troupe.pipeline.train.LrSchedule;
import java.util.List;
import java.util.Map;

/**
 * The driver's side of one optimizer step over the ranks of a {@link PlanRun}: the loss scale sent
 * with {@code Go}, the {@link StepDecision} from the ranks' reports (global gradient norm, clip,
 * inf/NaN skip), the learning rate and next loss scale sent with {@code Apply}, and the step's
 * metrics line once every rank has applied it. Steps before the job's FP32 warm-up ends run in
 * FP32; after it, in the job's mode, with dynamic loss scaling where that is fp16.
 */
final class StepControl {
  private final JobConfig job;
  private final Plan plan;
  private LossScaler scaler;
  private long startNanos;
  private StepDecision decision;
  private double lr;
  private LossScaler next; // the scaler the ranks go on with after the step being decided

  StepControl(JobConfig job, Plan plan) {
    this.job = job;
    this.plan = plan;
    this.scaler = new LossScaler(job.precision().initialLossScale(), 0);
  }

  /** The loss scaler as of the last step applied (saved with a checkpoint). */
  LossScaler scaler() {
    return scaler;
  }

  /** The run starts from a checkpoint or copies: their loss scaler. */
  void restore(LossScaler restored) {
    scaler = restored;
  }

  /** The precision step {@code s} (0-based) runs in: {@code fp32} during the warm-up. */
  String precision(long s) {
    return job.precision().modeAt(s);
  }

  private boolean fp16(long s) {
    return precision(s).equals("fp16");
  }

  /** Step {@code step} starts now: the loss scale its backward uses (1 outside fp16). */
  double begin(long step) {
    startNanos = System.nanoTime();
    return fp16(step) ? scaler.scale() : 1.0;
  }

  /**
   * Every rank reported the first half of step {@code step} of {@code total} (rank by rank in
   * {@code reports}): what every rank applies.
   */
  RankProtocol.Apply decide(String runId, long step, long total, List<StageWorker.Report> reports) {
    decision = StepDecision.of(plan, reports, job.optimizer().maxGradNorm());
    lr =
        job.optimizer().lr()
            * LrSchedule.multiplier(
                job.optimizer().schedule(), step, total, job.optimizer().warmupSteps());
    next = fp16(step) ? scaler.update(decision.skipped()) : scaler;
    return new RankProtocol.Apply(
        runId, step, decision.clip(), decision.update(), lr, next.scale(), next.growthTracker());
  }

  /** What a step applied on every rank comes to: its metrics line, loss and speed. */
  record Done(Map<String, Object> line, double loss, double tokensPerS) {}

  /** Every rank applied step {@code step}: its metrics line; the loss scaler moves on. */
  Done done(long step) {
    double seconds = (System.nanoTime() - startNanos) / 1e9;
    double tokensPerS = decision.tokens() / seconds;
    double scale = fp16(step) ? scaler.scale() : 1.0;
    scaler = next;
    Map<String, Object> m =
        MetricsLog.stepLine(
            step + 1,
            decision.loss(),
            lr,
            decision.gradNorm(),
            decision.tokens(),
            tokensPerS,
            precision(step),
            scale,
            decision.skipped());
    m.put("plan", plan.toString());
    return new Done(m, decision.loss(), tokensPerS);
  }
}
