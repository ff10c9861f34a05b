package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.job.ElasticSettings;
import dev.troupe.pipeline.job.ParallelSettings;
import java.util.List;
import java.util.Locale;

/**
 * Whether devices that joined should be taken into a running plan: the job's {@code elastic}
 * settings applied to the planner's estimates. Pure; the coordinator asks it when the devices it
 * sees change and after every committed step.
 */
public final class ScalingPolicy {
  private ScalingPolicy() {}

  /**
   * The devices a plan may use: the first {@code maxDevices} of {@code usable} (all with 0).
   *
   * @param usable in the cluster's order
   */
  public static <T> List<T> limit(ElasticSettings e, List<T> usable) {
    int max = e.maxDevices();
    return max > 0 && usable.size() > max ? List.copyOf(usable.subList(0, max)) : usable;
  }

  /**
   * Whether joining devices may change the running plan at all now: only with {@code parallel =
   * auto}, and not within the cooldown after the last plan. Asked before planning, which {@link
   * #growth} needs.
   */
  public static boolean mayGrow(
      ElasticSettings e, ParallelSettings parallel, double sinceLastPlanSeconds) {
    return parallel.auto() && sinceLastPlanSeconds >= e.cooldownSeconds();
  }

  /**
   * Why the running plan should give way to {@code candidate} (the planner's choice over the
   * devices now usable), or null where it should not: a fixed plan never grows; within the cooldown
   * after the last plan nothing changes; otherwise the candidate must be estimated at least {@code
   * minGain} faster.
   *
   * @param current the running plan's estimated step time, in seconds
   * @param currentPlan the running plan, for the message
   * @param sinceLastPlanSeconds time since the running plan was made
   */
  public static String growth(
      ElasticSettings e,
      ParallelSettings parallel,
      double current,
      String currentPlan,
      double sinceLastPlanSeconds,
      Planner.Choice candidate) {
    if (!mayGrow(e, parallel, sinceLastPlanSeconds)) return null;
    if (!(candidate.stepSeconds() <= current * (1 - e.minGain()))) return null;
    return String.format(
        Locale.ROOT,
        "devices joined: the planner estimates %.1f ms per step with %s on %d devices, against"
            + " %.1f ms with %s",
        1000 * candidate.stepSeconds(),
        candidate.plan(),
        candidate.plan().worldSize(),
        1000 * current,
        currentPlan);
  }
}
