package dev.troupe.pipeline.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.job.ElasticSettings;
import dev.troupe.pipeline.job.ParallelSettings;
import java.util.List;
import org.junit.jupiter.api.Test;

class ScalingPolicyTest {
  private static Planner.Choice candidate(double seconds) {
    List<Planner.Device> devices =
        List.of(
            new Planner.Device("cpu:0", "n1", 1L << 30, 1),
            new Planner.Device("cpu:0", "n2", 1L << 30, 1));
    return new Planner.Choice(Plan.even(1, 1, 2, 4), devices, "", seconds);
  }

  private static final ElasticSettings POLICY = new ElasticSettings(1, 0, 30, 0.2);

  @Test
  void joinersAreTakenInWhenTheEstimateFallsByTheLeastGain() {
    String why =
        ScalingPolicy.growth(
            POLICY, ParallelSettings.AUTO, 0.100, "pp=1 tp=1 dp=1", 31, candidate(0.080));
    assertNotNull(why);
    assertTrue(why.startsWith("devices joined: the planner estimates 80.0 ms"), why);
    assertTrue(why.endsWith("against 100.0 ms with pp=1 tp=1 dp=1"), why);
    // 19% faster is not enough
    assertNull(
        ScalingPolicy.growth(POLICY, ParallelSettings.AUTO, 0.100, "p", 31, candidate(0.081)));
  }

  @Test
  void notWithinTheCooldownNorForAFixedPlan() {
    assertNull(
        ScalingPolicy.growth(POLICY, ParallelSettings.AUTO, 0.100, "p", 29.9, candidate(0.010)));
    assertNull(
        ScalingPolicy.growth(
            POLICY, ParallelSettings.fixed(1, 1, 1), 0.100, "p", 3600, candidate(0.010)));
    assertNotNull(
        ScalingPolicy.growth(
            new ElasticSettings(1, 0, 0, 0.5),
            ParallelSettings.AUTO,
            0.100,
            "p",
            0,
            candidate(0.050)));
  }

  @Test
  void maxDevicesCutsTheListInOrder() {
    List<String> usable = List.of("a", "b", "c");
    assertEquals(usable, ScalingPolicy.limit(POLICY, usable));
    assertEquals(
        List.of("a", "b"), ScalingPolicy.limit(new ElasticSettings(1, 2, 30, 0.2), usable));
    assertEquals(usable, ScalingPolicy.limit(new ElasticSettings(1, 3, 30, 0.2), usable));
  }
}
