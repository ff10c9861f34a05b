package dev.troupe.pipeline.model;

import static dev.troupe.pipeline.model.TestTensors.random;
import static dev.troupe.pipeline.model.TestTensors.relDiff;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.troupe.pipeline.engine.Natives;
import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * FP32 products on the CPU run in oneDNN ({@link Kernels}) with a backward of their own: outputs
 * and the gradients of input, weight and bias agree with autograd through libtorch's {@code linear}
 * (the BLAS) to FP32 rounding, trained or frozen, with and without a bias; a frozen weight gets no
 * gradient; fp16's upcast products take the same path.
 */
class Fp32ProductsTest {
  @BeforeAll
  static void load() {
    Natives.ensureLoaded();
  }

  private static Tensor leaf(Tensor t, boolean grad) {
    Tensor c = t.clone();
    c.set_requires_grad(grad);
    return c;
  }

  @Test
  void oneDnnServesFp32ProductsWithTheBundledLibtorch() {
    assumeTrue(System.getenv(Kernels.FP32_PRODUCTS) == null, "the user chose");
    assertEquals("onednn", Kernels.fp32Products());
  }

  @Test
  void theSettingIsOneDnnOrBlas() {
    assertNull(Kernels.oneDnnLinear("blas"));
    assertNull(Kernels.oneDnnLinear(" BLAS "));
    assertNotNull(Kernels.oneDnnLinear("onednn"));
    assertNotNull(Kernels.oneDnnLinear(""));
    assertNotNull(Kernels.oneDnnLinear(null));
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> Kernels.oneDnnLinear("mkl"));
    assertTrue(e.getMessage().contains("TROUPE_FP32_PRODUCTS"), e.getMessage());
  }

  /**
   * rounds: trained weight with bias, trained without, frozen weight with a trained bias, frozen
   */
  @ParameterizedTest
  @ValueSource(ints = {0, 1, 2, 3})
  void outputAndGradientsMatchAutogradThroughTheBlas(int round) {
    boolean withBias = round == 0 || round == 2;
    boolean trained = round < 2;
    try (PointerScope scope = new PointerScope()) {
      Tensor x0 = random(1, 2, 7, 96);
      Tensor w0 = random(2, 80, 96).mul(Torch.scalar(0.1));
      Tensor b0 = random(3, 80);
      Tensor r = random(4, 2, 7, 80); // the loss's weights: loss = sum(y * r)
      Tensor[][] grads = new Tensor[2][];
      Tensor[] outputs = new Tensor[2];
      for (int k = 0; k < 2; k++) {
        Tensor x = leaf(x0, true);
        Tensor w = leaf(w0, trained);
        Tensor b = withBias ? leaf(b0, true) : null;
        Tensor y;
        try (PointerScope forward = new PointerScope()) {
          y =
              Torch.keep(
                  k == 0
                      ? Kernels.linear(x, w, b)
                      : b == null ? torch.linear(x, w) : torch.linear(x, w, new TensorOptional(b)));
        }
        y.mul(r).sum().backward();
        outputs[k] = y.detach();
        grads[k] = new Tensor[] {x.grad(), w.grad(), b == null ? null : b.grad()};
      }
      assertTrue(
          relDiff(outputs[0], outputs[1]) < 1e-6, "output " + relDiff(outputs[0], outputs[1]));
      assertTrue(relDiff(grads[0][0], grads[1][0]) < 1e-6, "input gradient");
      if (trained) {
        assertTrue(relDiff(grads[0][1], grads[1][1]) < 1e-6, "weight gradient");
      } else {
        assertFalse(grads[0][1].defined(), "a frozen weight got a gradient");
      }
      if (withBias) assertTrue(relDiff(grads[0][2], grads[1][2]) < 1e-6, "bias gradient");
    }
  }

  /**
   * A trained weight's gradient goes into its grad by hand: it accumulates over backward passes as
   * autograd's does, and a weight used through a copy (not a leaf) gets its gradient through
   * autograd.
   */
  @Test
  void aTrainedWeightsGradientAccumulatesAndReachesTheLeaf() {
    try (PointerScope scope = new PointerScope()) {
      Tensor w0 = random(2, 80, 96).mul(Torch.scalar(0.1));
      Tensor[] direct = new Tensor[2];
      Tensor[] throughCopy = new Tensor[2];
      for (int k = 0; k < 2; k++) {
        Tensor w = leaf(w0, true);
        Tensor v = leaf(w0, true);
        for (int micro = 0; micro < 2; micro++) {
          Tensor x = leaf(random(10 + micro, 3, 96), true);
          Tensor r = random(20 + micro, 3, 80);
          Tensor copy = v.mul(Torch.scalar(2.0));
          Tensor y =
              k == 0
                  ? Kernels.linear(x, w, null).add(Kernels.linear(x, copy, null))
                  : torch.linear(x, w).add(torch.linear(x, copy));
          y.mul(r).sum().backward();
        }
        direct[k] = w.grad();
        throughCopy[k] = v.grad();
      }
      assertTrue(
          relDiff(direct[0], direct[1]) < 1e-6, "accumulated " + relDiff(direct[0], direct[1]));
      assertTrue(relDiff(throughCopy[0], throughCopy[1]) < 1e-6, "through a copy");
    }
  }

  @Test
  void withoutAutogradTheProductCarriesNoGraph() {
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      Tensor x = leaf(random(1, 33, 128), true);
      Tensor w = random(2, 256, 128);
      Tensor y = Kernels.linear(x, w, null);
      assertFalse(y.requires_grad());
      assertTrue(relDiff(y, torch.linear(x, w)) < 1e-6);
    }
  }

  @Test
  void matmulOfAnFp32MatrixMatchesTorch() {
    try (PointerScope scope = new PointerScope()) {
      Tensor g = random(1, 131, 300); // a head chunk's logits gradient against a head [300, 96]
      Tensor head = random(2, 300, 96);
      assertTrue(relDiff(Kernels.matmul(g, head), torch.matmul(g, head)) < 1e-6);
    }
  }

  @Test
  void fp16ProductsRunInFp32AndBackwardToo() {
    try (PointerScope scope = new PointerScope()) {
      Tensor x0 = random(1, 3, 5, 96).to(ScalarType.Half);
      Tensor w = random(2, 72, 96).mul(Torch.scalar(0.1)).to(ScalarType.Half);
      Tensor[] inputGrads = new Tensor[2];
      Tensor[] outputs = new Tensor[2];
      for (int k = 0; k < 2; k++) {
        Tensor x = leaf(x0, true);
        Tensor y =
            k == 0
                ? Kernels.linear(x, w, null)
                : torch.linear(x.to(ScalarType.Float), w.to(ScalarType.Float)).to(ScalarType.Half);
        assertEquals(ScalarType.Half.value, y.scalar_type().value);
        y.to(ScalarType.Float).sum().backward();
        outputs[k] = y.detach().to(ScalarType.Float);
        inputGrads[k] = x.grad().to(ScalarType.Float);
      }
      // fp16 outputs: at most a rounding apart
      assertTrue(relDiff(outputs[0], outputs[1]) < 1e-3, "output");
      assertTrue(relDiff(inputGrads[0], inputGrads[1]) < 1e-3, "input gradient");
    }
  }

  @Test
  void smallFactorsKeepLibtorchsPath() {
    try (PointerScope scope = new PointerScope()) {
      Tensor x = leaf(random(1, 64, 96), true);
      Tensor a = leaf(random(2, 16, 96), true); // a LoRA A of rank 16
      assertTrue(torch.equal(Kernels.linear(x, a, null), torch.linear(x, a)));
    }
  }
}
