package dev.troupe.pipeline.model;

import org.bytedeco.pytorch.Tensor;

/**
 * Sums a partial result over the tensor-parallel shards of a layer, in place. This is the seam
 * where the runtime's collective (actor transport or NCCL) plugs into the model.
 */
@FunctionalInterface
public interface AllReduce {
  /** Without tensor parallelism the partial sum is already the whole. */
  AllReduce NONE = partial -> {};

  void sumInPlace(Tensor partial);
}
