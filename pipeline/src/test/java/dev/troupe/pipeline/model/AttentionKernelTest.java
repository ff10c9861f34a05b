package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.Natives;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorArrayRefOptional;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * bf16 attention on the CPU ({@link CenteredAttention}) against the same attention computed in FP64
 * from the same bf16 inputs: the output and the gradients of q, k and v, causal and with a
 * sliding-window mask, with and without grouped-query heads, with keys and values that do or do not
 * share a large common part.
 */
class AttentionKernelTest {
  @BeforeAll
  static void load() {
    Natives.ensureLoaded();
  }

  private static Tensor bf16(long seed, double scale, long... shape) {
    torch.manual_seed(seed);
    return torch.randn(shape).mul(new org.bytedeco.pytorch.Scalar(scale)).to(ScalarType.BFloat16);
  }

  private static double relDiff(Tensor a, Tensor b) {
    Tensor x = a.to(ScalarType.Double);
    return torch.linalg_vector_norm(x.sub(b)).item_double()
        / torch.linalg_vector_norm(b).item_double();
  }

  /** Output and input gradients of {@code attention}, each as FP64. */
  private interface Attn {
    Tensor apply(Tensor q, Tensor k, Tensor v);
  }

  private static Tensor[] run(Attn attn, Tensor q0, Tensor k0, Tensor v0, Tensor g, ScalarType t) {
    Tensor q = q0.to(t).requires_grad_(true);
    Tensor k = k0.to(t).requires_grad_(true);
    Tensor v = v0.to(t).requires_grad_(true);
    Tensor out = attn.apply(q, k, v);
    out.backward(g.to(t), new BoolOptional(), false, new TensorArrayRefOptional());
    return new Tensor[] {
      out.to(ScalarType.Double),
      q.grad().to(ScalarType.Double),
      k.grad().to(ScalarType.Double),
      v.grad().to(ScalarType.Double)
    };
  }

  /** {@code spread} times noise per position, plus (spread below 1) one vector shared by all. */
  private static Tensor shared(long seed, double spread, long b, long heads, long t, long d) {
    if (spread == 1) return bf16(seed, 1.0, b, heads, t, d);
    return bf16(seed + 100, 1.0, b, heads, 1, d)
        .to(ScalarType.Float)
        .add(bf16(seed, spread, b, heads, t, d).to(ScalarType.Float))
        .to(ScalarType.BFloat16);
  }

  /**
   * {@code spread} below 1: every position's value (key) is one shared vector plus {@code spread}
   * times its own noise, as in a trained model where values and keys share a large common part.
   * Then {@code dP = dO v^T} (the scores {@code q k^T}) differ little between keys, and the softmax
   * backward, {@code P (dP - sum(P dP))} (the softmax), sees only those differences: rounded to
   * bf16 they vanish, and the q and k gradients with them, unless the keys and values are centred
   * first, as {@link CenteredAttention} does.
   */
  @ParameterizedTest(name = "heads {0}, kv heads {1}, window {2}, value spread {3}, key spread {4}")
  @CsvSource({
    "4, 4, 0, 1, 1",
    "8, 2, 0, 1, 1",
    "4, 2, 5, 1, 1",
    "4, 4, 0, 0.02, 1",
    "8, 2, 0, 0.02, 1",
    "4, 4, 0, 1, 0.1",
    "8, 2, 5, 0.02, 0.1"
  })
  void bf16AttentionMatchesFp64(
      int heads, int kvHeads, int window, double spread, double keySpread) {
    try (PointerScope scope = new PointerScope()) {
      long b = 2;
      long t = 24;
      long d = 16;
      // q scaled up so the softmax is peaked, as in a trained model
      Tensor q = bf16(1, 3.0, b, heads, t, d);
      Tensor k = shared(2, keySpread, b, kvHeads, t, d);
      Tensor v = shared(3, spread, b, kvHeads, t, d);
      Tensor g = bf16(4, 1.0, b, heads, t, d);
      Tensor mask = null;
      if (window > 0) {
        Tensor i = torch.arange(new org.bytedeco.pytorch.Scalar(t)).unsqueeze(1);
        Tensor j = torch.arange(new org.bytedeco.pytorch.Scalar(t)).unsqueeze(0);
        mask = j.le(i).logical_and(i.sub(j).lt(new org.bytedeco.pytorch.Scalar(window)));
      }
      boolean gqa = heads != kvHeads;
      Tensor m = mask;
      Tensor[] ref =
          run(
              (x, y, z) ->
                  torch.scaled_dot_product_attention(
                      x,
                      y,
                      z,
                      m == null ? new TensorOptional() : new TensorOptional(m),
                      0.0,
                      m == null,
                      new DoubleOptional(),
                      gqa),
              q,
              k,
              v,
              g,
              ScalarType.Double);
      Tensor[] ours =
          run((x, y, z) -> Kernels.attention(x, y, z, m, gqa), q, k, v, g, ScalarType.BFloat16);
      String[] names = {"output", "q grad", "k grad", "v grad"};
      for (int n = 0; n < 4; n++) {
        double err = relDiff(ours[n], ref[n]);
        System.out.printf(
            "bf16 attention, heads %d/%d window %d spreads %s/%s: %s relative error %.2e%n",
            heads, kvHeads, window, spread, keySpread, names[n], err);
        // bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%): the inputs are exact, the
        // probabilities and the products' outputs are rounded once each
        assertTrue(err < 1e-2, names[n] + ": relative error " + err);
      }
    }
  }
}
