package dev.troupe.pipeline.model;

import org.bytedeco.pytorch.DoubleOptional;
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
 * fp16 attention runs fused in FP32. bf16 attention is spelled out with FP32 scores (see {@link
 * #explicitFp32Scores}), as precise as the fused bf16 kernel and 5-8 times faster. Rounding the
 * scores to bf16 as well, as transformers' eager attention does, is faster still but less precise;
 * it is not used. On CUDA everything runs fused in the compute dtype.
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
   * never copied.
   */
  private static Tensor explicitFp32Scores(Tensor q, Tensor k, Tensor v, Tensor mask) {
    long b = q.size(0);
    long heads = q.size(1);
    long t = q.size(2);
    long d = q.size(3);
    long kvHeads = k.size(1);
    long s = k.size(2);
    long group = heads / kvHeads;
    Tensor hidden =
        mask == null
            ? torch.triu(torch.ones(new long[] {t, s}, new TensorOptions(ScalarType.Bool)), 1)
            : torch.logical_not(mask);
    // the mask as an additive bias the product starts from: scale, mask and q k^T in one call
    Tensor bias =
        torch
            .zeros(new long[] {t, s}, new TensorOptions(ScalarType.Float))
            .masked_fill(hidden, new Scalar(Double.NEGATIVE_INFINITY));
    if (group > 1) bias = bias.repeat(group, 1);
    Tensor scores =
        torch.baddbmm(
            bias,
            q.reshape(b * kvHeads, group * t, d).to(ScalarType.Float),
            k.reshape(b * kvHeads, s, d).to(ScalarType.Float).transpose(1, 2),
            new Scalar(1.0),
            new Scalar(1.0 / Math.sqrt(d)));
    Tensor p = torch.softmax(scores, -1, new ScalarTypeOptional());
    return torch
        .bmm(p, v.reshape(b * kvHeads, s, d).to(ScalarType.Float))
        .to(ScalarType.BFloat16)
        .view(b, heads, t, d);
  }
}
