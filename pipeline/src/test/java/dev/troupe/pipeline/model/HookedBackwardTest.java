package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.Natives;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorArrayRefOptional;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Functions with hand-written backward passes ({@link HookedBackward}): the centred attention gives
 * the same gradients whichever of them are wanted and however its work is chunked; the
 * flash-attention kernel's, the SwiGLU's and the RMS norm's match autograd through the same (or,
 * for flash, equivalent FP64) operations; each call's gradients come from its own inputs whatever
 * order the backward passes come in; nothing is kept once the backward has run or the step is over.
 */
class HookedBackwardTest {
  @BeforeAll
  static void load() {
    Natives.ensureLoaded();
  }

  private static Tensor bf16(long seed, double scale, long... shape) {
    torch.manual_seed(seed);
    return torch.randn(shape).mul(new Scalar(scale)).to(ScalarType.BFloat16);
  }

  private static double relDiff(Tensor a, Tensor b) {
    Tensor x = a.to(ScalarType.Double);
    Tensor y = b.to(ScalarType.Double);
    return torch.linalg_vector_norm(x.sub(y)).item_double()
        / torch.linalg_vector_norm(y).item_double();
  }

  /** q, k, v (leaves) and an output gradient for one attention of the given shape. */
  private record Case(Tensor q, Tensor k, Tensor v, Tensor grad, Tensor bias) {
    static Case of(long seed, int heads, int kvHeads, boolean[] needsGrad) {
      long b = 2;
      long t = 20;
      long d = 16;
      Tensor q = bf16(seed, 3.0, b, heads, t, d).requires_grad_(needsGrad[0]);
      Tensor k = bf16(seed + 1, 1.0, b, kvHeads, t, d).requires_grad_(needsGrad[1]);
      Tensor v = bf16(seed + 2, 1.0, b, kvHeads, t, d).requires_grad_(needsGrad[2]);
      Tensor g = bf16(seed + 3, 1.0, b, heads, t, d);
      return new Case(q, k, v, g, Kernels.additiveMask(q, k, null, ScalarType.BFloat16));
    }

    void backward(Tensor out) {
      out.backward(grad, new BoolOptional(), false, new TensorArrayRefOptional());
    }

    /** The gradients of q, k, v (null where none), cloned, then cleared for the next run. */
    Tensor[] takeGrads() {
      Tensor[] grads = new Tensor[3];
      Tensor[] in = {q, k, v};
      for (int i = 0; i < 3; i++) {
        if (in[i].grad().defined()) {
          grads[i] = in[i].grad().clone();
          in[i].grad().zero_();
        }
      }
      return grads;
    }
  }

  /** The centred attention's output and the gradients {@code c} wants, in chunks of scores. */
  private static Tensor centred(Case c, long chunkBytes) {
    Tensor out = CenteredAttention.attention(c.q, c.k, c.v, c.bias, chunkBytes);
    c.backward(out);
    return out;
  }

  /**
   * Each gradient of the centred attention is the same tensor, bit for bit, whichever others are
   * wanted and whether the work runs in one chunk or in one chunk per key/value head.
   */
  @ParameterizedTest(name = "heads {0}/{1}, gradients of q k v: {2} {3} {4}")
  @CsvSource({
    "4, 4, true, true, true",
    "8, 2, true, true, true",
    "4, 4, true, false, true",
    "4, 2, false, true, false",
    "4, 2, false, false, true"
  })
  void centredAttentionGradientsDoNotDependOnWhatElseIsWantedOrOnChunks(
      int heads, int kvHeads, boolean gq, boolean gk, boolean gv) {
    try (PointerScope scope = new PointerScope()) {
      Case all = Case.of(10, heads, kvHeads, new boolean[] {true, true, true});
      Tensor whole = centred(all, CenteredAttention.CHUNK_SCORE_BYTES);
      Tensor[] expected = all.takeGrads();
      Case some = Case.of(10, heads, kvHeads, new boolean[] {gq, gk, gv});
      long oneHead = (long) (heads / kvHeads) * some.q.size(2) * some.k.size(2) * 2;
      Tensor chunked = centred(some, oneHead);
      assertEquals(0, relDiff(chunked, whole), 0.0, "output");
      Tensor[] in = {some.q, some.k, some.v};
      Tensor[] actual = some.takeGrads();
      for (int i = 0; i < 3; i++) {
        assertEquals(in[i].requires_grad(), actual[i] != null, "gradient " + i + " present");
        if (actual[i] != null) {
          assertEquals(0, relDiff(actual[i], expected[i]), 0.0, "gradient " + i);
        }
      }
    }
  }

  /** The gradients {@code c} holds are those wanted, each within 1e-4 of {@code expected}. */
  private static void assertGradientsMatch(
      String what, Case c, Tensor[] expected, int heads, int kvHeads) {
    Tensor[] in = {c.q, c.k, c.v};
    Tensor[] actual = c.takeGrads();
    String[] names = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
      boolean wanted = in[i].requires_grad();
      assertEquals(wanted, actual[i] != null, names[i] + " gradient present");
      if (!wanted) continue;
      double err = relDiff(actual[i], expected[i]);
      System.out.printf(
          "%s, heads %d/%d: %s gradient relative difference %.2e%n",
          what, heads, kvHeads, names[i], err);
      assertTrue(err < 1e-4, what + ", " + names[i] + " gradient: relative difference " + err);
    }
  }

  /**
   * Causal attention spelled out in FP64 from the bf16 inputs, rounded to bf16 once at the end (and
   * the gradients once on their way back into the bf16 inputs), under autograd.
   */
  private static Tensor fp64Attention(Tensor q, Tensor k, Tensor v) {
    long group = q.size(1) / k.size(1);
    Tensor k64 = perQueryHead64(k, group);
    Tensor scores =
        torch
            .matmul(q.to(ScalarType.Double), k64.transpose(2, 3))
            .mul(new Scalar(1.0 / Math.sqrt(q.size(3))))
            .add(Kernels.additiveMask(k, k, null, ScalarType.Double));
    return torch
        .matmul(
            torch.softmax(scores, -1, new org.bytedeco.pytorch.ScalarTypeOptional()),
            perQueryHead64(v, group))
        .to(ScalarType.BFloat16);
  }

  /** {@code x} [b, kv, t, d] as FP64 [b, kv * group, t, d], each key/value head repeated. */
  private static Tensor perQueryHead64(Tensor x, long group) {
    return x.to(ScalarType.Double)
        .repeat_interleave(
            group,
            new org.bytedeco.pytorch.LongOptional(1),
            new org.bytedeco.pytorch.LongOptional());
  }

  /**
   * Causal bf16 attention through libtorch's FP32 flash kernel ({@link FlashCpu}) against autograd
   * through the spelled-out FP64 form: both round to bf16 once, so they differ by the kernel's FP32
   * rounding carried into that one bf16 rounding.
   */
  @ParameterizedTest(name = "flash, heads {0}/{1}, gradients of q k v: {2} {3} {4}")
  @CsvSource({
    "4, 4, true, true, true",
    "8, 2, true, true, true",
    "4, 4, true, false, true",
    "4, 2, false, true, false"
  })
  void flashAttentionMatchesAutogradThroughTheSpelledOutForm(
      int heads, int kvHeads, boolean gq, boolean gk, boolean gv) {
    assertTrue(FlashCpu.available(), "this libtorch has the CPU flash-attention kernel");
    try (PointerScope scope = new PointerScope()) {
      Case c = Case.of(60, heads, kvHeads, new boolean[] {gq, gk, gv});
      Tensor reference = fp64Attention(c.q, c.k, c.v);
      c.backward(reference);
      Tensor[] expected = c.takeGrads();
      Tensor out = FlashCpu.attention(c.q, c.k, c.v);
      double outErr = relDiff(out, reference);
      assertTrue(outErr < 1e-4, "output: relative difference " + outErr);
      c.backward(out);
      assertGradientsMatch("flash attention", c, expected, heads, kvHeads);
    }
  }

  /**
   * FP32 and fp16 causal attention through {@link FlashCpu} (the kernel's OpenBLAS products on each
   * calling thread alone) against libtorch's own {@code scaled_dot_product_attention} under
   * autograd, which picks the same kernel with OpenBLAS splitting every product: the same output
   * and gradients, bit for bit. The size is bench-m's head shape, so that the kernel's products are
   * large enough for OpenBLAS to split.
   */
  @ParameterizedTest(name = "flash {0}, heads {1}/{2}")
  @CsvSource({"Float, 4, 4", "Float, 4, 2", "Half, 4, 4"})
  void flashAttentionInFp32AndFp16IsLibtorchsOwnToTheBit(String type, int heads, int kvHeads) {
    ScalarType dtype = ScalarType.valueOf(type);
    dev.troupe.pipeline.engine.BlasThreads.size(dev.troupe.pipeline.engine.ComputeDtype.FP32);
    try (PointerScope scope = new PointerScope()) {
      long b = 2, t = 256, d = 64;
      Tensor[] in = new Tensor[3];
      long[] hs = {heads, kvHeads, kvHeads};
      for (int i = 0; i < 3; i++) {
        torch.manual_seed(70 + i);
        in[i] = torch.randn(b, hs[i], t, d).to(dtype).requires_grad_(true);
      }
      torch.manual_seed(73);
      Tensor grad = torch.randn(b, heads, t, d).to(dtype);

      Tensor out = FlashCpu.attention(in[0], in[1], in[2]);
      out.backward(grad, new BoolOptional(), false, new TensorArrayRefOptional());
      Tensor[] grads = new Tensor[3];
      for (int i = 0; i < 3; i++) {
        grads[i] = in[i].grad().clone();
        in[i].grad().zero_();
      }

      Tensor k32 = in[1].to(ScalarType.Float);
      Tensor v32 = in[2].to(ScalarType.Float);
      if (heads != kvHeads) {
        k32 =
            k32.repeat_interleave(
                heads / kvHeads,
                new org.bytedeco.pytorch.LongOptional(1),
                new org.bytedeco.pytorch.LongOptional());
        v32 =
            v32.repeat_interleave(
                heads / kvHeads,
                new org.bytedeco.pytorch.LongOptional(1),
                new org.bytedeco.pytorch.LongOptional());
      }
      Tensor expected =
          torch
              .scaled_dot_product_attention(
                  in[0].to(ScalarType.Float),
                  k32,
                  v32,
                  new org.bytedeco.pytorch.TensorOptional(),
                  0.0,
                  true,
                  new org.bytedeco.pytorch.DoubleOptional(),
                  false)
              .to(dtype);
      expected.backward(grad, new BoolOptional(), false, new TensorArrayRefOptional());

      assertEquals(dtype.value, out.scalar_type().value, "output dtype");
      assertTrue(torch.equal(out, expected), "output");
      String[] names = {"q", "k", "v"};
      for (int i = 0; i < 3; i++) {
        assertEquals(dtype.value, grads[i].scalar_type().value, names[i] + " gradient dtype");
        assertTrue(torch.equal(grads[i], in[i].grad()), names[i] + " gradient");
      }
    }
  }

  @Test
  void rmsNormMatchesAutogradThroughTheSameOperations() {
    try (PointerScope scope = new PointerScope()) {
      // rows of different scales, as a residual stream's are
      Tensor x =
          bf16(70, 1.0, 2, 12, 64)
              .to(ScalarType.Float)
              .mul(bf16(71, 3.0, 2, 12, 1).to(ScalarType.Float))
              .to(ScalarType.BFloat16)
              .requires_grad_(true);
      Tensor dy = bf16(72, 1.0, 2, 12, 64);
      RmsNorm norm = new RmsNorm(bf16(73, 0.1, 64).add(new Scalar(1.0)), 1e-5);
      Tensor reference = norm.compute(x);
      reference.backward(dy, new BoolOptional(), false, new TensorArrayRefOptional());
      Tensor expected = x.grad().clone();
      x.grad().zero_();
      HookedBackward.releaseAll();
      Tensor out = norm.forward(x);
      assertEquals(1, HookedBackward.open(), "the norm's own backward is attached");
      assertEquals(0, relDiff(out, reference), 0.0, "output");
      out.backward(dy, new BoolOptional(), false, new TensorArrayRefOptional());
      double err = relDiff(x.grad(), expected);
      System.out.printf("rms norm: input gradient relative difference %.2e%n", err);
      // the same FP32 quantities in another order, rounded to bf16 once: a few elements a
      // rounding step (2^-8) apart
      assertTrue(err < 1e-3, "input gradient: relative difference " + err);
    }
  }

  @ParameterizedTest(name = "gradients of g u: {0} {1}")
  @CsvSource({"true, true", "true, false", "false, true"})
  void swigluMatchesAutogradThroughTheSameOperations(boolean gg, boolean gu) {
    try (PointerScope scope = new PointerScope()) {
      Tensor g = bf16(50, 2.0, 2, 12, 40).requires_grad_(gg);
      Tensor u = bf16(51, 1.0, 2, 12, 40).requires_grad_(gu);
      Tensor dh = bf16(52, 1.0, 2, 12, 40);
      Tensor reference = torch.silu(g).mul(u);
      reference.backward(dh, new BoolOptional(), false, new TensorArrayRefOptional());
      Tensor[] expected = {gg ? g.grad().clone() : null, gu ? u.grad().clone() : null};
      if (gg) g.grad().zero_();
      if (gu) u.grad().zero_();
      Tensor out = Mlp.swiglu(g, u);
      assertEquals(0, relDiff(out, reference), 0.0, "output");
      out.backward(dh, new BoolOptional(), false, new TensorArrayRefOptional());
      Tensor[] in = {g, u};
      for (int i = 0; i < 2; i++) {
        if (expected[i] == null) {
          assertFalse(in[i].grad().defined(), "no gradient for input " + i);
        } else {
          // the operations autograd runs, on the same values: identical
          assertEquals(0, relDiff(in[i].grad(), expected[i]), 0.0, "gradient of input " + i);
        }
      }
    }
  }

  @Test
  void eachForwardGetsItsOwnGradientsWhateverTheOrderOfTheBackwards() {
    try (PointerScope scope = new PointerScope()) {
      boolean[] all = {true, true, true};
      Case first = Case.of(20, 4, 2, all);
      Case second = Case.of(30, 4, 2, all);
      first.backward(CenteredAttention.attention(first.q, first.k, first.v, first.bias));
      Tensor[] firstAlone = first.takeGrads();
      second.backward(CenteredAttention.attention(second.q, second.k, second.v, second.bias));
      Tensor[] secondAlone = second.takeGrads();
      // both forwards first (a pipeline's warm-up), then the backwards, later one first
      Tensor a = CenteredAttention.attention(first.q, first.k, first.v, first.bias);
      Tensor b = CenteredAttention.attention(second.q, second.k, second.v, second.bias);
      second.backward(b);
      first.backward(a);
      Tensor[] firstAfter = first.takeGrads();
      Tensor[] secondAfter = second.takeGrads();
      for (int i = 0; i < 3; i++) {
        assertEquals(0, relDiff(firstAfter[i], firstAlone[i]), 0.0, "first, input " + i);
        assertEquals(0, relDiff(secondAfter[i], secondAlone[i]), 0.0, "second, input " + i);
      }
    }
  }

  @Test
  void nothingIsKeptOnceTheBackwardHasRunOrTheStepIsOver() {
    try (PointerScope scope = new PointerScope()) {
      HookedBackward.releaseAll();
      Case c = Case.of(40, 4, 4, new boolean[] {true, true, true});
      c.backward(CenteredAttention.attention(c.q, c.k, c.v, c.bias));
      assertEquals(1, HookedBackward.open(), "the last forward until the next one");
      // a forward whose backward never runs, after one whose backward has run
      CenteredAttention.attention(c.q, c.k, c.v, c.bias);
      assertEquals(1, HookedBackward.open(), "the spent forward was freed by the next");
      CausalLm.releaseUnfinishedBackwards();
      assertEquals(0, HookedBackward.open(), "the unfinished one at the end of the step");
      // no gradient requires no hooks: a plain forward
      Tensor q = c.q.detach();
      Tensor out = Kernels.attention(q, c.k.detach(), c.v.detach(), null, false);
      assertFalse(out.requires_grad());
      assertEquals(0, HookedBackward.open());
    }
  }
}
