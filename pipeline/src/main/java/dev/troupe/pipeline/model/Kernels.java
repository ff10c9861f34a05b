package dev.troupe.pipeline.model;

import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.Scalar;
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
 * fp16 attention runs fused in FP32: causal FP32 and fp16 attention through {@link FlashCpu}, the
 * kernel libtorch would pick, with its OpenBLAS products kept on its own threads. bf16 attention
 * runs spelled out in bf16 products with its keys and values centred first ({@link
 * CenteredAttention}), which keeps it as precise as the inputs' bf16 rounding allows where
 * transformers' eager form, rounding the same products, loses the q and k gradients; where one
 * head's score matrix would be too large for that form, causal attention runs through libtorch's
 * FP32 flash kernel ({@link FlashCpu}). On CUDA everything runs fused in the compute dtype.
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
      if (CenteredAttention.fits(q, k)) {
        return CenteredAttention.attention(q, k, v, additiveMask(q, k, mask, dtype));
      }
      if (mask == null && FlashCpu.available()) return FlashCpu.attention(q, k, v);
    }
    // FP32 and fp16, causal: libtorch's FP32 flash kernel, as scaled_dot_product_attention would
    // pick, but with OpenBLAS on each of the kernel's threads alone (see FlashCpu)
    if (!q.is_cuda()
        && mask == null
        && (dtype.value == ScalarType.Float.value || dtype.value == ScalarType.Half.value)
        && FlashCpu.available()) {
      return FlashCpu.attention(q, k, v);
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

  /**
   * The mask (causal where {@code mask} is null) as an additive bias [group * t, s] in {@code
   * dtype}: 0 where a query may attend, -inf elsewhere; a key/value head's group of query heads one
   * after the other, as {@link CenteredAttention} lays out their scores.
   */
  static Tensor additiveMask(Tensor q, Tensor k, Tensor mask, ScalarType dtype) {
    long t = q.size(2);
    long s = k.size(2);
    long group = q.size(1) / k.size(1);
    Tensor hidden =
        mask == null
            ? torch.triu(torch.ones(new long[] {t, s}, new TensorOptions(ScalarType.Bool)), 1)
            : torch.logical_not(mask);
    Tensor bias =
        torch
            .zeros(new long[] {t, s}, new TensorOptions(dtype))
            .masked_fill(hidden, new Scalar(Double.NEGATIVE_INFINITY));
    return group > 1 ? bias.repeat(group, 1) : bias;
  }
}
