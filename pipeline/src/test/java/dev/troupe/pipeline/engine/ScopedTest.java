package dev.troupe.pipeline.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@link Torch#scoped}: what the body makes is freed when it returns, its result lives as long as
 * the caller's scope, and autograd keeps whatever it saved from the freed intermediates.
 */
class ScopedTest {
  @BeforeAll
  static void load() {
    Natives.ensureLoaded();
  }

  @Test
  void theBodysIntermediatesAreFreedOnReturnItsResultWithTheCallersScope() {
    Tensor[] inner = new Tensor[1];
    Tensor out;
    try (PointerScope caller = new PointerScope()) {
      out =
          Torch.scoped(
              () -> {
                inner[0] = torch.ones(new long[] {4}).mul(new Scalar(2.0));
                return inner[0].add(new Scalar(1.0));
              });
      assertTrue(inner[0].isNull(), "an intermediate outlived the body");
      assertFalse(out.isNull());
      assertEquals(12.0, out.sum().item_double());
    }
    assertTrue(out.isNull(), "the result outlived the caller's scope");
  }

  @Test
  void autogradKeepsWhatItSavedFromFreedIntermediates() {
    torch.manual_seed(7);
    Tensor x = torch.randn(new long[] {3, 5});
    x.set_requires_grad(true);
    try (PointerScope caller = new PointerScope()) {
      // sin's backward needs its input, x * x, whose only Java handle the body frees
      Tensor y = Torch.scoped(() -> torch.sin(x.mul(x)));
      y.sum().backward();
      Tensor expected;
      try (org.bytedeco.pytorch.NoGradGuard noGrad = new org.bytedeco.pytorch.NoGradGuard()) {
        expected = torch.cos(x.mul(x)).mul(x).mul(new Scalar(2.0));
      }
      double diff = torch.max(torch.abs(x.grad().sub(expected))).item_double();
      assertTrue(diff < 1e-6, "input gradient off by " + diff);
    } finally {
      x.close();
    }
  }
}
