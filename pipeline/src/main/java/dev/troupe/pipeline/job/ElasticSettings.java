package dev.troupe.pipeline.job;

/**
 * When a distributed run changes its devices on its own ({@code elastic { ... }}). Failures and
 * drains always re-plan; these settings govern the rest.
 *
 * @param minDevices the job starts (and re-plans) only with at least this many usable devices
 * @param maxDevices the most devices a plan uses; 0 = no limit
 * @param cooldownSeconds the least time between re-plans that joining devices cause
 * @param minGain with {@code parallel = auto}: devices that join are taken into the plan, at the
 *     next step boundary, when the planner's estimate of the step time falls by at least this
 *     fraction of the current plan's
 */
public record ElasticSettings(
    int minDevices, int maxDevices, double cooldownSeconds, double minGain) {
  /** One device at least, no limit, 30 s between re-plans, 20% faster. */
  public static final ElasticSettings DEFAULT = new ElasticSettings(1, 0, 30, 0.2);

  public ElasticSettings {
    if (minDevices < 1) throw new IllegalArgumentException("minDevices must be >= 1");
    if (maxDevices < 0) throw new IllegalArgumentException("maxDevices must be >= 0");
    if (maxDevices > 0 && maxDevices < minDevices) {
      throw new IllegalArgumentException(
          "maxDevices " + maxDevices + " is below minDevices " + minDevices);
    }
    if (!(cooldownSeconds >= 0)) throw new IllegalArgumentException("cooldownSeconds must be >= 0");
    if (!(minGain > 0 && minGain < 1)) {
      throw new IllegalArgumentException("minGain must be in (0, 1)");
    }
  }
}
