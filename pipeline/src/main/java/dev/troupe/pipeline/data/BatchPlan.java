package dev.troupe.pipeline.data;

import java.util.SplittableRandom;

/**
 * Which examples each optimizer step uses. Global index {@code k = step * G + j} (step 0-based,
 * {@code j} in {@code [0, G)}), for {@code N} examples and global batch {@code G}.
 *
 * <p>Without shuffling: example {@code k mod N}, so step {@code s} takes lines {@code s*G ...
 * s*G+G-1} in file order, wrapping around.
 *
 * <p>With shuffling: epoch {@code e = k / N}, position {@code p = k mod N}, example {@code
 * perm_e[p]}, where {@code perm_e} is the Fisher-Yates permutation drawn from {@code new
 * SplittableRandom(seed * 1_000_003 + e)} (long arithmetic, wrapping): start from the identity,
 * then for {@code i} from {@code N-1} down to 1 swap entries {@code i} and {@code nextInt(i + 1)}.
 * It is deterministic from seed and epoch, so the position in the data is fully described by the
 * step number: resuming at step {@code s} needs no other state.
 *
 * <p>Not thread-safe (it caches the current epoch's permutation).
 */
public final class BatchPlan {
  private final int examples;
  private final int globalBatch;
  private final boolean shuffle;
  private final long seed;
  private long cachedEpoch = -1;
  private int[] cachedPermutation;

  /**
   * A plan over {@code examples} examples, {@code globalBatch} per optimizer step.
   *
   * @throws IllegalArgumentException if either count is below 1
   */
  public BatchPlan(int examples, int globalBatch, boolean shuffle, long seed) {
    if (examples < 1) {
      throw new IllegalArgumentException("need at least one example, got " + examples);
    }
    if (globalBatch < 1) {
      throw new IllegalArgumentException("globalBatch must be at least 1, got " + globalBatch);
    }
    this.examples = examples;
    this.globalBatch = globalBatch;
    this.shuffle = shuffle;
    this.seed = seed;
  }

  /**
   * The {@code G} example indices for 0-based optimizer step {@code step}.
   *
   * @throws IllegalArgumentException if {@code step < 0}
   * @throws ArithmeticException if {@code step * G} overflows a long
   */
  public int[] step(long step) {
    if (step < 0) {
      throw new IllegalArgumentException("step must be >= 0, got " + step);
    }
    long first = Math.multiplyExact(step, globalBatch);
    int[] indices = new int[globalBatch];
    for (int j = 0; j < globalBatch; j++) {
      long k = Math.addExact(first, j);
      int position = (int) (k % examples);
      indices[j] = shuffle ? permutation(k / examples)[position] : position;
    }
    return indices;
  }

  /** Epochs completed before step {@code step}: {@code step * G / N} as a fraction. */
  public double epoch(long step) {
    return (double) step * globalBatch / examples;
  }

  /** The number of examples {@code N}. */
  public int examples() {
    return examples;
  }

  /** The examples per optimizer step {@code G}. */
  public int globalBatch() {
    return globalBatch;
  }

  private int[] permutation(long epoch) {
    if (epoch != cachedEpoch) {
      SplittableRandom random = new SplittableRandom(seed * 1_000_003L + epoch);
      int[] perm = new int[examples];
      for (int i = 0; i < examples; i++) {
        perm[i] = i;
      }
      for (int i = examples - 1; i > 0; i--) {
        int j = random.nextInt(i + 1);
        int swap = perm[i];
        perm[i] = perm[j];
        perm[j] = swap;
      }
      cachedPermutation = perm;
      cachedEpoch = epoch;
    }
    return cachedPermutation;
  }
}
