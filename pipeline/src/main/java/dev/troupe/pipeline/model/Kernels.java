package dev.troupe.pipeline.model;

import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * The model's matrix products and attention, with the precision each runs in on the device at hand.
 * Measured on the 2-core AVX-512 CPU of the project's machines with libtorch 2.10: bf16 GEMMs run
 * at about twice the FP32 rate (oneDNN), but fp16 GEMMs at a fifth of it, and the fused attention
 * kernel in bf16 or fp16 is 8-15 times slower than in FP32 (4 × 8 heads × 256 × 64: 72 ms against
 * 8.5 ms forward; 145 ms against 40 ms with backward). So on a CPU fp16 products are computed from
 * FP32 copies of their operands and rounded back (as PyTorch's own CPU autocast falls back), and
 * attention in reduced precision runs in FP32. On CUDA everything runs in the compute dtype.
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
    boolean reduced = dtype.value != ScalarType.Float.value;
    if (!q.is_cuda() && reduced) {
      long b = q.size(0);
      long heads = q.size(1);
      long t = q.size(2);
      if (b * heads * t * t * 4 <= EXPLICIT_SCORES_BYTES) return explicit(q, k, v, mask);
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

  /** transformers' repeat_kv: [b, kv, t, d] to [b, kv * group, t, d], each head repeated. */
  private static Tensor repeatKv(Tensor x, long group) {
    long b = x.size(0);
    long kv = x.size(1);
    long t = x.size(2);
    long d = x.size(3);
    return x.unsqueeze(2).expand(new long[] {b, kv, group, t, d}).reshape(b, kv * group, t, d);
  }

  /** The largest FP32 score matrix [b, heads, t, t] {@link #explicit} makes: 64 MiB. */
  private static final long EXPLICIT_SCORES_BYTES = 64L << 20;

  /**
   * Attention spelled out as two batched products in the compute dtype (oneDNN's bf16 GEMMs) with
   * the masked softmax in FP32: where the scores are small enough to hold, this is 1.7 times faster
   * on the CPU than the fused kernel run in FP32 (fused bf16 is slower still), and it never enters
   * OpenBLAS, whose spinning worker threads otherwise compete with libtorch's.
   */
  private static Tensor explicit(Tensor q, Tensor k, Tensor v, Tensor mask) {
    long heads = q.size(1);
    long kvHeads = k.size(1);
    if (heads != kvHeads) {
      long group = heads / kvHeads;
      k = repeatKv(k, group);
      v = repeatKv(v, group);
    }
    long t = q.size(2);
    Tensor scores =
        matmul(q, k.transpose(-2, -1))
            .to(ScalarType.Float)
            .mul(new org.bytedeco.pytorch.Scalar(1.0 / Math.sqrt(q.size(3))));
    Tensor hidden =
        mask == null
            ? torch.triu(
                torch.ones(
                    new long[] {t, t}, new org.bytedeco.pytorch.TensorOptions(ScalarType.Bool)),
                1)
            : torch.logical_not(mask);
    scores = scores.masked_fill(hidden, new org.bytedeco.pytorch.Scalar(Double.NEGATIVE_INFINITY));
    Tensor p =
        torch
            .softmax(scores, -1, new org.bytedeco.pytorch.ScalarTypeOptional())
            .to(q.scalar_type());
    return matmul(p, v);
  }
}
