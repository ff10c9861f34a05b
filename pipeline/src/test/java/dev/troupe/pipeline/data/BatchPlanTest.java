package dev.troupe.pipeline.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

class BatchPlanTest {

  @Test
  void inOrderStepsTakeConsecutiveLinesAndWrap() {
    BatchPlan plan = new BatchPlan(5, 2, false, 42);
    assertArrayEquals(new int[] {0, 1}, plan.step(0));
    assertArrayEquals(new int[] {2, 3}, plan.step(1));
    assertArrayEquals(new int[] {4, 0}, plan.step(2));
    assertArrayEquals(new int[] {1, 2}, plan.step(3));
    assertArrayEquals(new int[] {2, 3}, plan.step(1_000_000_001L));
    assertEquals(0.0, plan.epoch(0));
    assertEquals(1.2, plan.epoch(3), 1e-12);
    assertArrayEquals(new int[] {0, 1, 2, 0, 1, 2, 0}, new BatchPlan(3, 7, false, 0).step(0));
    assertArrayEquals(new int[] {1, 2, 0, 1, 2, 0, 1}, new BatchPlan(3, 7, false, 0).step(1));
  }

  @Test
  void eachShuffledEpochIsTheDocumentedPermutation() {
    int n = 10;
    long seed = 7;
    BatchPlan plan = new BatchPlan(n, n, true, seed);
    int[] identity = IntStream.range(0, n).toArray();
    for (int epoch = 0; epoch < 5; epoch++) {
      int[] perm = plan.step(epoch);
      assertArrayEquals(fisherYates(n, seed * 1_000_003L + epoch), perm);
      int[] sorted = perm.clone();
      Arrays.sort(sorted);
      assertArrayEquals(identity, sorted, "a permutation");
    }
    assertFalse(Arrays.equals(plan.step(0), plan.step(1)), "epochs differ");
    assertFalse(Arrays.equals(plan.step(0), identity), "shuffled");
    assertFalse(Arrays.equals(plan.step(0), new BatchPlan(n, n, true, 8).step(0)), "seeds differ");
  }

  @Test
  void shuffledStepsFollowTheEpochOrderAcrossBoundaries() {
    int n = 7;
    BatchPlan byEpoch = new BatchPlan(n, n, true, 3);
    int[] expected = IntStream.range(0, 3).flatMap(e -> Arrays.stream(byEpoch.step(e))).toArray();
    BatchPlan plan = new BatchPlan(n, 3, true, 3);
    int[] actual = IntStream.range(0, 7).flatMap(s -> Arrays.stream(plan.step(s))).toArray();
    assertArrayEquals(expected, actual);
    assertEquals(3.0, plan.epoch(7), 1e-12);

    BatchPlan resumed = new BatchPlan(n, 3, true, 3);
    assertArrayEquals(plan.step(5), resumed.step(5), "position depends only on the step");
    assertArrayEquals(plan.step(2), resumed.step(2), "and not on earlier calls");
  }

  @Test
  void rejectsBadArguments() {
    assertThrows(IllegalArgumentException.class, () -> new BatchPlan(0, 1, false, 0));
    assertThrows(IllegalArgumentException.class, () -> new BatchPlan(1, 0, false, 0));
    assertThrows(IllegalArgumentException.class, () -> new BatchPlan(3, 2, true, 0).step(-1));
    assertThrows(
        ArithmeticException.class, () -> new BatchPlan(3, 4, false, 0).step(Long.MAX_VALUE / 2));
  }

  private static int[] fisherYates(int n, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    int[] perm = IntStream.range(0, n).toArray();
    for (int i = n - 1; i > 0; i--) {
      int j = random.nextInt(i + 1);
      int t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    return perm;
  }
}
