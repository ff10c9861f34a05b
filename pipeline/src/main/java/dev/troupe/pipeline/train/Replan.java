package dev.troupe.pipeline.train;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Why a run starts where an earlier one of the same job ended: a device was lost, a node drained or
 * devices joined.
 *
 * @param cause what happened, in words
 * @param oldPlan the plan the earlier run ran
 * @param generation the count of runs so far
 * @param detectedAtMillis when the coordinator learned of the cause (epoch milliseconds)
 * @param detectMs for a loss, the time from the last step the coordinator saw committed to that
 *     moment (the failure detector's delay plus the part of the step that was in flight; an upper
 *     bound of the detection time); 0 for a re-plan on purpose, -1 where unknown
 */
public record Replan(
    String cause, String oldPlan, int generation, long detectedAtMillis, long detectMs) {

  /**
   * The {@code replan} line of metrics.jsonl, written after the first step of the new run: {@code
   * restoredFrom} is {@code copies}, {@code checkpoint} or {@code start}; {@code resumedAtStep} the
   * step the run started from, {@code committedStep} the job's last committed step then.
   */
  public Map<String, Object> event(
      String newPlan, String restoredFrom, long committedStep, long resumedAtStep, long nowMillis) {
    Map<String, Object> e = new LinkedHashMap<>();
    e.put("event", "replan");
    e.put("cause", cause);
    e.put("generation", generation);
    e.put("old_plan", oldPlan);
    e.put("new_plan", newPlan);
    e.put("restored_from", restoredFrom);
    e.put("committed_step", committedStep);
    e.put("resumed_at_step", resumedAtStep);
    e.put("detect_ms", detectMs);
    e.put("recover_ms", nowMillis - detectedAtMillis);
    return e;
  }
}
