package dev.troupe.pipeline.model;

/**
 * Which tensor-parallel shard a device holds, Megatron style: attention split by heads (q/k/v by
 * output rows, o_proj by input columns) and the MLP split by intermediate columns (gate/up by rows,
 * down_proj by columns). Each shard then produces a partial sum of o_proj and down_proj outputs
 * that an all-reduce completes (two per layer forward, two backward). Embedding, norms and output
 * head are replicated on every shard.
 */
public record ShardSpec(int rank, int size) {
  /** No tensor parallelism. */
  public static final ShardSpec NONE = new ShardSpec(0, 1);

  public ShardSpec {
    if (size < 1 || rank < 0 || rank >= size)
      throw new IllegalArgumentException("bad shard " + rank + " of " + size);
  }

  /** Checks that the model splits evenly into {@code size} shards. */
  public void validate(ModelConfig c) {
    if (c.numKvHeads() % size != 0) {
      throw new IllegalArgumentException(
          "tensor parallel size "
              + size
              + " does not divide num_key_value_heads "
              + c.numKvHeads());
    }
    if (c.intermediateSize() % size != 0) {
      throw new IllegalArgumentException(
          "tensor parallel size "
              + size
              + " does not divide intermediate_size "
              + c.intermediateSize());
    }
  }

  /** The slice {@code [start, start+length)} of {@code total} rows or columns this shard owns. */
  public long start(long total) {
    return total / size * rank;
  }

  public long length(long total) {
    return total / size;
  }

  public boolean isSharded() {
    return size > 1;
  }
}
