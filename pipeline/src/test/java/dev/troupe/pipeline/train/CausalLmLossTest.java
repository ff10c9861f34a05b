package dev.troupe.pipeline.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.Natives;
import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The frozen head's fused loss ({@link CausalLmLoss#sumAndGradientInPlace}) against autograd
 * through {@link CausalLmLoss#sumFlat} and a backward from {@code weight * sum}: the same sum and
 * the same logits' gradient, ignored rows included.
 */
class CausalLmLossTest {
  @BeforeAll
  static void load() {
    Natives.ensureLoaded();
  }

  @ParameterizedTest(name = "weight {0}, vocab {1}")
  @CsvSource({"1.0, 50", "0.03125, 50", "512.0, 50", "1.0, 32000"})
  void fusedLossAndGradientMatchAutograd(double weight, long vocab) {
    try (PointerScope scope = new PointerScope()) {
      torch.manual_seed(7);
      long rows = 12;
      // peaked rows, as a trained model's logits are
      Tensor logits = torch.randn(rows, vocab).mul(new Scalar(4.0));
      Tensor targets = torch.randint(vocab, new long[] {rows});
      targets.narrow(0, 3, 2).fill_(new Scalar(CausalLmLoss.IGNORE));
      targets.narrow(0, rows - 1, 1).fill_(new Scalar(CausalLmLoss.IGNORE));

      Tensor leaf = logits.clone().requires_grad_(true);
      Tensor expectedSum = CausalLmLoss.sumFlat(leaf, targets);
      expectedSum.mul(Torch.scalar(weight)).backward();
      Tensor expectedGrad = leaf.grad();

      Tensor inPlace = logits.clone();
      double sum = CausalLmLoss.sumAndGradientInPlace(inPlace, targets, weight);
      assertEquals(expectedSum.item_double(), sum, 1e-6 * Math.abs(sum), "summed loss");
      double worst = torch.max(torch.abs(inPlace.sub(expectedGrad))).item_double();
      double scale = torch.max(torch.abs(expectedGrad)).item_double();
      System.out.printf(
          "fused loss, weight %s: sum %.6f against %.6f, gradient max difference %.2e of %.2e%n",
          weight, sum, expectedSum.item_double(), worst, scale);
      assertTrue(worst <= 1e-6 * scale, "gradient differs by " + worst + " of " + scale);
      // ignored rows: no gradient at all
      for (long r : new long[] {3, 4, rows - 1}) {
        assertEquals(0.0, torch.abs(inPlace.select(0, r)).sum().item_double(), 0.0, "row " + r);
      }
    }
  }
}
