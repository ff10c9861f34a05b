package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * The model's matrix products and attention, with the precision each runs in on the device at hand.
 * Measured on the 2-core AVX-512 CPU of the project's machines with libtorch 2.10: bf16 GEMMs run
 * at about twice the FP32 rate (oneDNN), but fp16 GEMMs at a fifth of it, and the fused attention
 * kernel in bf16 or fp16 is 8-15 times slower than in FP32 (4 × 8 heads × 256 × 64: 72 ms against
 * 8.5 ms forward; 145 ms against 40 ms with backward). So on a CPU fp16 products are computed from
 * FP32 copies of their operands and rounded back (as PyTorch's own CPU autocast falls back), and
 * fp16 attention runs fused in FP32. bf16 attention keeps its scores and products FP32 too: causal
 * attention through libtorch's FP32 flash kernel with a backward that keeps the bf16 inputs ({@link
 * FlashCpu}), attention under another mask spelled out (see {@link #explicitFp32Scores}); either is
 * as precise as the fused bf16 kernel and several times faster. Rounding the scores to bf16, as
 * transformers' eager attention does, is faster still on a CPU with AMX (bench-m lora-bf16: 8% more
 * tokens/s, with 170 MiB more memory where autograd keeps the probabilities) but less precise; it
 * is not used. On CUDA everything runs fused in the compute dtype.
 */
final class Kernels {
  private Kernels() {}

  private static boolean upcastProducts(Tensor x) {
    return !x.is_cuda() && x.scalar_type().value == ScalarType.Half.value;
  }

  /** {@code x W^T (+ b)}. */
  static Tensor linear(Tensor x, Tensor w, Tensor bias) {
    if (upcastProducts(x)) {
      Tensor y =
          bias == null
              ? torch.linear(x.to(ScalarType.Float), w.to(ScalarType.Float))
              : torch.linear(
                  x.to(ScalarType.Float),
                  w.to(ScalarType.Float),
                  new TensorOptional(bias.to(ScalarType.Float)));
      return y.to(ScalarType.Half);
    }
    return bias == null ? torch.linear(x, w) : torch.linear(x, w, new TensorOptional(bias));
  }

  /** {@code a @ b}. */
  static Tensor matmul(Tensor a, Tensor b) {
    if (upcastProducts(a)) {
      return torch.matmul(a.to(ScalarType.Float), b.to(ScalarType.Float)).to(ScalarType.Half);
    }
    return torch.matmul(a, b);
  }

  /**
   * Scaled dot-product attention of q [b, heads, t, d] over k, v [b, kvHeads, t, d]: causal when
   * {@code mask} is null, else as the boolean mask says.
   */
  static Tensor attention(Tensor q, Tensor k, Tensor v, Tensor mask, boolean gqa) {
    ScalarType dtype = q.scalar_type();
    if (!q.is_cuda() && dtype.value == ScalarType.BFloat16.value) {
      if (mask == null && FlashCpu.available()) return FlashCpu.attention(q, k, v);
      long scoreBytes = q.size(0) * q.size(1) * q.size(2) * k.size(2) * 4;
      if (scoreBytes <= EXPLICIT_SCORES_BYTES) return explicitFp32Scores(q, k, v, mask);
    }
    // fp16 on the CPU: FP32 (the fused fp16 kernel is slow)
    if (!q.is_cuda() && dtype.value == ScalarType.Half.value) {
      q = q.to(ScalarType.Float);
      k = k.to(ScalarType.Float);
      v = v.to(ScalarType.Float);
    }
    Tensor out =
        torch.scaled_dot_product_attention(
            q,
            k,
            v,
            mask == null ? new TensorOptional() : new TensorOptional(mask),
            0.0,
            mask == null,
            new DoubleOptional(),
            gqa);
    return out.scalar_type().value == dtype.value ? out : out.to(dtype);
  }

  /** The largest FP32 score matrix [b, heads, t, t] {@link #explicitFp32Scores} makes: 64 MiB. */
  private static final long EXPLICIT_SCORES_BYTES = 64L << 20;

  /**
   * bf16 attention spelled out, with the scores and the softmax in FP32 (as the fused kernel keeps
   * them; transformers' eager attention rounds the scores to bf16 first): {@code q k^T} as an FP32
   * product of the exact upcast bf16 values, then the masked softmax, and {@code p v} as an FP32
   * product too, rounded to bf16 once at the end. The FP32 {@code p v} matters for the backward
   * pass: its gradient {@code dP = dO v^T} then stays FP32, and the softmax backward {@code P (dP -
   * sum(P dP))} keeps the small differences between keys that a bf16 {@code dP} rounds away when
   * the values share a large common part, as a trained model's do (the q and k gradients came out
   * 6-10% wrong in {@code AttentionKernelTest}; 0.16% now). A grouped-query head group shares one
   * product with its key/value head ([b, kv, group * t, d] against [b, kv, d, t]): k and v are
   * never copied. Under autograd the backward computes the probabilities again ({@link
   * #recomputedAttention}) rather than keeping them.
   */
  private static Tensor explicitFp32Scores(Tensor q, Tensor k, Tensor v, Tensor mask) {
    Tensor bias = additiveMask(q, k, mask);
    boolean grad =
        GradMode.is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
    return grad ? recomputedAttention(q, k, v, bias) : scoresThenValues(q, k, v, bias);
  }

  /**
   * {@link #scoresThenValues} under autograd with a backward that computes the probabilities again
   * ({@link #scoresThenValuesBackward}) instead of letting autograd keep them, as flash attention
   * does: autograd through the spelled-out form keeps per layer the FP32 probabilities [b, heads,
   * t, s] and FP32 copies of q, k and v (bench-m: 28 MiB a layer); this keeps the bf16 q, k and v
   * (6 MiB), for one more {@code q k^T} product and softmax in the backward.
   */
  static Tensor recomputedAttention(Tensor q, Tensor k, Tensor v, Tensor bias) {
    Tensor out;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      out = scoresThenValues(q, k, v, bias);
    }
    return HookedBackward.attach(
        out,
        new Tensor[] {q, k, v},
        new Tensor[] {q, k, v, bias},
        (s, gradOut, wanted) -> scoresThenValuesBackward(s[0], s[1], s[2], s[3], gradOut, wanted));
  }

  /**
   * The mask as an additive FP32 bias [group * t, s] (0 where a query may attend, -inf elsewhere)
   * that the scores' product starts from: scale, mask and {@code q k^T} in one call.
   */
  static Tensor additiveMask(Tensor q, Tensor k, Tensor mask) {
    long t = q.size(2);
    long s = k.size(2);
    long group = q.size(1) / k.size(1);
    Tensor hidden =
        mask == null
            ? torch.triu(torch.ones(new long[] {t, s}, new TensorOptions(ScalarType.Bool)), 1)
            : torch.logical_not(mask);
    Tensor bias =
        torch
            .zeros(new long[] {t, s}, new TensorOptions(ScalarType.Float))
            .masked_fill(hidden, new Scalar(Double.NEGATIVE_INFINITY));
    return group > 1 ? bias.repeat(group, 1) : bias;
  }

  /** The FP32 probabilities [b * kv, group * t, s] of q over k: the softmax of the scores. */
  private static Tensor probabilities(Tensor q32, Tensor k32, Tensor bias) {
    Tensor scores =
        BatchProducts.baddbmm(bias, q32, k32.transpose(1, 2), 1.0 / Math.sqrt(q32.size(2)));
    return torch.softmax(scores, -1, new ScalarTypeOptional());
  }

  /** {@code x} [b, heads, t, d] as FP32 [b * kv, group * t, d]: a head group's rows together. */
  private static Tensor grouped(Tensor x, long kvHeads) {
    return x.reshape(x.size(0) * kvHeads, -1, x.size(3)).to(ScalarType.Float);
  }

  /** The attention's output (bf16) from the bias {@link #additiveMask} made. */
  static Tensor scoresThenValues(Tensor q, Tensor k, Tensor v, Tensor bias) {
    long kv = k.size(1);
    Tensor p = probabilities(grouped(q, kv), grouped(k, kv), bias);
    return BatchProducts.bmm(p, grouped(v, kv))
        .to(ScalarType.BFloat16)
        .view(q.size(0), q.size(1), q.size(2), q.size(3));
  }

  /**
   * The gradients of q, k and v (bf16, each in its input's shape, held by the caller) of {@link
   * #scoresThenValues} for the output gradient {@code gradOut}, the probabilities computed again:
   * {@code dV = P^T dO}, {@code dP = dO V^T}, {@code dS = P (dP - sum(P dP))}, {@code dQ = dS K /
   * sqrt(d)}, {@code dK = dS^T Q / sqrt(d)}, all in FP32 as autograd computes them for the
   * spelled-out form. A gradient not {@code wanted} is null.
   */
  static Tensor[] scoresThenValuesBackward(
      Tensor q, Tensor k, Tensor v, Tensor bias, Tensor gradOut, boolean[] wanted) {
    Tensor[] grads = new Tensor[3];
    try (PointerScope scope = new PointerScope()) {
      long kv = k.size(1);
      Tensor q32 = grouped(q, kv);
      Tensor k32 = grouped(k, kv);
      Tensor dO = grouped(gradOut, kv);
      Tensor p = probabilities(q32, k32, bias);
      if (wanted[2]) {
        grads[2] =
            Torch.keep(
                BatchProducts.bmm(p.transpose(1, 2), dO)
                    .to(ScalarType.BFloat16)
                    .view(v.size(0), v.size(1), v.size(2), v.size(3)));
      }
      if (wanted[0] || wanted[1]) {
        Tensor dS = BatchProducts.bmm(dO, grouped(v, kv).transpose(1, 2));
        Tensor rowSums = p.mul(dS).sum(new long[] {-1}, true, new ScalarTypeOptional());
        dS.sub_(rowSums).mul_(p);
        Scalar scale = new Scalar(1.0 / Math.sqrt(q.size(3)));
        if (wanted[0]) {
          grads[0] =
              Torch.keep(
                  BatchProducts.bmm(dS, k32)
                      .mul_(scale)
                      .to(ScalarType.BFloat16)
                      .view(q.size(0), q.size(1), q.size(2), q.size(3)));
        }
        if (wanted[1]) {
          grads[1] =
              Torch.keep(
                  BatchProducts.bmm(dS.transpose(1, 2), q32)
                      .mul_(scale)
                      .to(ScalarType.BFloat16)
                      .view(k.size(0), k.size(1), k.size(2), k.size(3)));
        }
      }
    }
    return grads;
  }
}
