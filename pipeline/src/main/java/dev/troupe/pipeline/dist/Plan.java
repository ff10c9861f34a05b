package dev.troupe.pipeline.dist;

import java.util.Arrays;

/**
 * How a job is split over devices: {@code pp} pipeline stages, each cut into {@code tp} tensor
 * shards, the whole replicated {@code dp} times for data parallelism; {@code pp · tp · dp} ranks in
 * all. Stage {@code s} holds decoder layers {@code [boundaries[s], boundaries[s+1])}, the first
 * also the embedding and the last the final norm and head.
 *
 * <p>Ranks are numbered with the shard innermost, then the stage, then the replica: {@code rank =
 * (replica · pp + stage) · tp + shard}. Devices are given to ranks in that order, so the shards of
 * a stage (which talk most) sit on neighbouring devices, usually of one node.
 */
public record Plan(int pp, int tp, int dp, int[] boundaries) {
  public Plan {
    if (pp < 1 || tp < 1 || dp < 1) {
      throw new IllegalArgumentException("bad plan " + pp + "×" + tp + "×" + dp);
    }
    if (boundaries == null || boundaries.length != pp + 1 || boundaries[0] != 0) {
      throw new IllegalArgumentException(
          "a plan of " + pp + " stages needs " + (pp + 1) + " boundaries starting at 0");
    }
    for (int s = 0; s < pp; s++) {
      if (boundaries[s + 1] <= boundaries[s]) {
        throw new IllegalArgumentException(
            "stage " + s + " holds no layers: boundaries " + Arrays.toString(boundaries));
      }
    }
    boundaries = boundaries.clone();
  }

  /** Everything on one device. */
  public static Plan single(int layers) {
    return new Plan(1, 1, 1, new int[] {0, layers});
  }

  /** {@code pp} stages of as equal a number of layers as {@code layers} allows. */
  public static Plan even(int pp, int tp, int dp, int layers) {
    if (pp > layers) {
      throw new IllegalArgumentException(
          "cannot cut " + layers + " decoder layers into " + pp + " pipeline stages");
    }
    int[] b = new int[pp + 1];
    for (int s = 0; s <= pp; s++) b[s] = (int) ((long) layers * s / pp);
    return new Plan(pp, tp, dp, b);
  }

  public int worldSize() {
    return pp * tp * dp;
  }

  public int layers() {
    return boundaries[pp];
  }

  @Override
  public int[] boundaries() {
    return boundaries.clone();
  }

  /** Where rank {@code rank} sits. */
  public Rank rank(int rank) {
    if (rank < 0 || rank >= worldSize()) {
      throw new IllegalArgumentException("rank " + rank + " outside a plan of " + worldSize());
    }
    return new Rank(rank, rank / tp % pp, rank % tp, rank / (tp * pp));
  }

  /** The rank at stage {@code stage}, shard {@code shard} of replica {@code replica}. */
  public int rankOf(int stage, int shard, int replica) {
    return (replica * pp + stage) * tp + shard;
  }

  /** First layer of stage {@code s}. */
  public int firstLayer(int stage) {
    return boundaries[stage];
  }

  /** End (exclusive) layer of stage {@code s}. */
  public int endLayer(int stage) {
    return boundaries[stage + 1];
  }

  /** {@code pp=2 tp=1 dp=1 stages [0,4) [4,8)}. */
  @Override
  public String toString() {
    StringBuilder sb = new StringBuilder("pp=" + pp + " tp=" + tp + " dp=" + dp + " stages");
    for (int s = 0; s < pp; s++)
      sb.append(" [").append(boundaries[s]).append(',').append(boundaries[s + 1]).append(')');
    return sb.toString();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Plan p
        && p.pp == pp
        && p.tp == tp
        && p.dp == dp
        && Arrays.equals(p.boundaries, boundaries);
  }

  @Override
  public int hashCode() {
    return Arrays.hashCode(boundaries) * 31 + (pp * 1000 + tp) * 1000 + dp;
  }

  /** One rank of a plan: its index, pipeline stage, tensor shard and data-parallel replica. */
  public record Rank(int index, int stage, int shard, int replica) {}
}
