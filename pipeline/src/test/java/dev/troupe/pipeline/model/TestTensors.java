package dev.troupe.pipeline.model;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/** Seeded random tensors and relative differences, for the model package's numerics tests. */
final class TestTensors {
  private TestTensors() {}

  /** Standard normal values of {@code shape} (FP32), the same for the same seed. */
  static Tensor random(long seed, long... shape) {
    torch.manual_seed(seed);
    return torch.randn(shape);
  }

  /** {@code |a - b| / |b|} in norm, computed in FP64. */
  static double relDiff(Tensor a, Tensor b) {
    Tensor x = a.to(ScalarType.Double);
    Tensor y = b.to(ScalarType.Double);
    return torch.linalg_vector_norm(x.sub(y)).item_double()
        / torch.linalg_vector_norm(y).item_double();
  }
}
