package dev.troupe.pipeline.job;

/**
 * How a distributed run splits the job over devices ({@code parallel = auto} or {@code parallel {
 * pp, tp, dp }}): pipeline stages × tensor shards per stage × data-parallel replicas. A run on one
 * device ignores it.
 *
 * @param auto let the planner choose from the registered devices; then pp, tp and dp are 1 and
 *     unused
 * @param pp pipeline stages, >= 1
 * @param tp tensor-parallel shards per stage, >= 1
 * @param dp data-parallel replicas, >= 1
 */
public record ParallelSettings(boolean auto, int pp, int tp, int dp) {
  /** The planner chooses. */
  public static final ParallelSettings AUTO = new ParallelSettings(true, 1, 1, 1);

  public ParallelSettings {
    if (pp < 1 || tp < 1 || dp < 1) {
      throw new IllegalArgumentException(
          "pp, tp and dp must be >= 1, got " + pp + ", " + tp + ", " + dp);
    }
    if (auto && (pp != 1 || tp != 1 || dp != 1)) {
      throw new IllegalArgumentException("auto takes no pp, tp or dp");
    }
  }

  /** Exactly {@code pp × tp × dp}. */
  public static ParallelSettings fixed(int pp, int tp, int dp) {
    return new ParallelSettings(false, pp, tp, dp);
  }

  /** Devices a fixed plan uses: {@code pp · tp · dp}. */
  public int worldSize() {
    return pp * tp * dp;
  }

  /** {@code auto} or {@code pp=2 tp=1 dp=1}. */
  @Override
  public String toString() {
    return auto ? "auto" : "pp=" + pp + " tp=" + tp + " dp=" + dp;
  }
}
