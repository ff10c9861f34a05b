package dev.troupe.tests;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** A separate JVM's first contact with libtorch: load it, compute, print the answer. */
public final class NativeProbe {
  private NativeProbe() {}

  public static void main(String[] args) {
    Torch.init();
    try (Tensor x = torch.ones(4, 4);
        Tensor y = x.matmul(x);
        Tensor s = y.sum()) {
      System.out.println("sum=" + s.item_float());
    }
  }
}
