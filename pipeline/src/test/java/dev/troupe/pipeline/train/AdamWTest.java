package dev.troupe.pipeline.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.Torch;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;

/**
 * The fused kernel against the single-tensor form (whose numerics {@code TrainingReferenceTest}
 * checks against torch.optim.AdamW): same parameters and moments after several steps, to rounding.
 */
class AdamWTest {
  static {
    Torch.init();
  }

  private static List<Tensor> tensors(long seed, long[]... shapes) {
    torch.manual_seed(seed);
    List<Tensor> out = new ArrayList<>();
    for (long[] s : shapes) out.add(torch.randn(s));
    return out;
  }

  private static double worstRelative(List<Tensor> a, List<Tensor> b) {
    double worst = 0;
    for (int i = 0; i < a.size(); i++) {
      double d = a.get(i).sub(b.get(i)).abs().max().item_double();
      worst = Math.max(worst, d / b.get(i).abs().max().item_double());
    }
    return worst;
  }

  @Test
  void theFusedKernelUpdatesAsTheSingleTensorFormDoes() {
    long[][] shapes = {{64, 48}, {48}, {3, 5, 7}};
    List<Tensor> fusedParams = tensors(1, shapes);
    List<Tensor> plainParams = new ArrayList<>();
    for (Tensor p : fusedParams) plainParams.add(p.clone());
    List<Tensor> before = new ArrayList<>();
    for (Tensor p : fusedParams) before.add(p.clone());
    try (AdamW fused = new AdamW(fusedParams, 0.9, 0.95, 1e-8, 0.1, true);
        AdamW plain = new AdamW(plainParams, 0.9, 0.95, 1e-8, 0.1, false)) {
      for (int step = 0; step < 6; step++) {
        List<Tensor> grads = tensors(100 + step, shapes);
        double lr = 1e-2 * (step + 1);
        fused.step(fusedParams, grads, lr);
        plain.step(plainParams, grads, lr);
      }
      assertEquals(6, fused.stepCount());
      assertTrue(fused.lastStepFused(), "this libtorch has the fused kernel");
      assertTrue(!plain.lastStepFused());
      double params = worstRelative(fusedParams, plainParams);
      double m = worstRelative(fused.expAvg(), plain.expAvg());
      double v = worstRelative(fused.expAvgSq(), plain.expAvgSq());
      System.out.printf(
          "fused AdamW against the single-tensor form after 6 steps: parameters %.2e, moments"
              + " %.2e / %.2e (worst relative to each tensor's largest)%n",
          params, m, v);
      assertTrue(params < 1e-6 && m < 1e-6 && v < 1e-6, params + " " + m + " " + v);
      // and the updates were real: every parameter moved
      assertTrue(worstRelative(before, fusedParams) > 1e-3);
    }
  }

  @Test
  void aNonContiguousGradientTakesTheSingleTensorForm() {
    List<Tensor> params = tensors(2, new long[] {8, 6});
    List<Tensor> copy = List.of(params.get(0).clone());
    Tensor grad = torch.randn(6, 8).t(); // [8, 6], not contiguous
    try (AdamW a = new AdamW(params, 0.9, 0.999, 1e-8, 0.0, true);
        AdamW b = new AdamW(copy, 0.9, 0.999, 1e-8, 0.0, false)) {
      a.step(params, List.of(grad), 1e-3);
      b.step(copy, List.of(grad.contiguous()), 1e-3);
      assertTrue(!a.lastStepFused());
      assertEquals(0.0, worstRelative(params, copy));
    }
  }
}
