package dev.troupe.pipeline.dist;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The words {@code status} shows for a plan: each stage's layers, devices, estimated time and
 * memory, the replicas, the microbatches and the bubble, and why this plan beat the others.
 */
final class PlanExplanation {
  private PlanExplanation() {}

  /**
   * The choice of {@code e} with its explanation; where {@code e} was chosen from several plans,
   * {@code next} is the runner-up that fits (null if none) and {@code single} the one-device plan.
   */
  static Planner.Choice choice(
      PlanCost.Evaluation e,
      String how,
      int registered,
      PlanCost.Evaluation next,
      PlanCost.Evaluation single) {
    Plan p = e.plan;
    StringBuilder sb = new StringBuilder();
    sb.append("plan ")
        .append(shape(p))
        .append(" (pp×tp×dp, ")
        .append(how)
        .append(") on ")
        .append(p.worldSize())
        .append(" of ")
        .append(registered)
        .append(" device")
        .append(registered == 1 ? "" : "s")
        .append("; times and sizes are estimates of a rough cost model\n");
    for (int s = 0; s < p.pp(); s++) {
      List<String> labels = new ArrayList<>();
      for (int k = 0; k < p.tp(); k++) labels.add(e.devices.get(p.rankOf(s, k, 0)).label());
      sb.append("  stage ")
          .append(s)
          .append(": ")
          .append(contents(p, s))
          .append(" on ")
          .append(String.join(", ", labels))
          .append(": est. ")
          .append(seconds(e.stageSeconds[s]))
          .append(" per microbatch, ")
          .append(bytes(e.stageBytes[s]))
          .append(" of ")
          .append(bytes(e.stageCapacity[s] / PlanCost.USABLE_MEMORY))
          .append(p.tp() > 1 ? " per shard" : "")
          .append('\n');
    }
    if (p.dp() > 1) {
      sb.append("  ")
          .append(p.dp())
          .append(" data-parallel replicas of these stages, on the next devices in rank order;")
          .append(" one all-reduce of the LoRA gradients per step: est. ")
          .append(seconds(e.dpSeconds))
          .append('\n');
    }
    int m = e.microbatches;
    sb.append("  ").append(m).append(" microbatch").append(m == 1 ? "" : "es").append(" per step");
    if (p.dp() > 1) sb.append(" per replica");
    if (p.pp() > 1) {
      sb.append(", pipeline bubble (p-1)/(m+p-1) = ")
          .append(percent((p.pp() - 1.0) / (m + p.pp() - 1)));
    }
    sb.append("; est. step ").append(seconds(e.stepSeconds));
    if (single != null && p.worldSize() > 1) {
      sb.append("\n  chosen over ");
      if (single.unfit == null) {
        sb.append(slower(single, e))
            .append(": splitting the compute outweighs the bubble and communication");
      } else {
        sb.append("1×1×1, which does not fit: ").append(single.unfit);
      }
      if (next != null && next != single) sb.append("; next best ").append(slower(next, e));
    } else if (single != null) {
      sb.append(
          next == null
              ? "\n  no plan on more devices fits"
              : "\n  more devices would not pay: the next best is " + slower(next, e));
    }
    return new Planner.Choice(p, e.devices, sb.toString(), e.stepSeconds);
  }

  /** {@code 1×1×2 (est. 1.6× slower)}. */
  private static String slower(PlanCost.Evaluation o, PlanCost.Evaluation e) {
    return shape(o.plan)
        + " (est. "
        + String.format(Locale.ROOT, "%.2f", o.stepSeconds / e.stepSeconds)
        + "× slower)";
  }

  /** {@code pp×tp×dp}. */
  static String shape(Plan p) {
    return p.pp() + "×" + p.tp() + "×" + p.dp();
  }

  /** {@code layers [0,5) + embedding}. */
  static String contents(Plan p, int s) {
    String out = "layers [" + p.firstLayer(s) + "," + p.endLayer(s) + ")";
    if (s == 0) out += " + embedding";
    if (s == p.pp() - 1) out += " + norm + head";
    return out;
  }

  static String percent(double fraction) {
    return Math.round(fraction * 100) + "%";
  }

  static String bytes(double b) {
    double mib = b / (1 << 20);
    return mib >= 1024
        ? String.format(Locale.ROOT, "%.1f GiB", mib / 1024)
        : String.format(Locale.ROOT, "%.1f MiB", mib);
  }

  static String seconds(double s) {
    return s >= 1
        ? String.format(Locale.ROOT, "%.2f s", s)
        : String.format(Locale.ROOT, "%.1f ms", s * 1000);
  }
}
