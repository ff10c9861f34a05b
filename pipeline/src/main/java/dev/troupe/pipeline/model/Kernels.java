package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import java.util.Locale;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Dispatcher;
import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.GenericList;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.IValue;
import org.bytedeco.pytorch.IValueVector;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.NumberType;
import org.bytedeco.pytorch.OperatorHandle;
import org.bytedeco.pytorch.OptionalType;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.Type;
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
 *
 * <p>FP32 products on the CPU (FP32 training, and fp16's upcast products) run in oneDNN, through
 * libtorch's own {@code mkldnn::_linear_pointwise}, not in the BLAS libtorch's {@code linear} and
 * {@code matmul} call: on the 2-core AMD EPYC (Zen 5) oneDNN's FP32 kernels ran bench-m's products
 * at 264-331 GFLOP/s against OpenBLAS's 160-173, forward, input and weight gradient alike, within
 * 9e-7 of each other (relative). libtorch has no autograd formula for that operator, so under
 * autograd the product has a backward of its own ({@link HookedBackward}) that keeps what
 * autograd's {@code linear} keeps (the weight, and the input where the weight is trained) and forms
 * the input gradient {@code dY W}, the weight gradient {@code dY^T X} and the bias gradient, again
 * in oneDNN; a trained weight's gradient goes into its {@code grad} directly. Products where one
 * side of the weight is small (a LoRA adapter's rank-r factors) keep libtorch's path and autograd.
 * {@code TROUPE_FP32_PRODUCTS=blas} puts every FP32 product back on the BLAS.
 */
final class Kernels {
  private Kernels() {}

  /** Environment variable: {@code onednn} (the default) or {@code blas}. */
  static final String FP32_PRODUCTS = "TROUPE_FP32_PRODUCTS";

  /** oneDNN's linear, or null where this libtorch lacks it or the user chose the BLAS. */
  private static final OperatorHandle ONEDNN_LINEAR = oneDnnLinear(System.getenv(FP32_PRODUCTS));

  /**
   * Weights with fewer rows or columns than this keep libtorch's path: a LoRA factor's product is
   * small, and its hooked backward would cost more than it saves.
   */
  static final long ONEDNN_MIN_SIDE = 64;

  static OperatorHandle oneDnnLinear(String setting) {
    String choice = setting == null || setting.isBlank() ? "onednn" : setting.trim();
    switch (choice.toLowerCase(Locale.ROOT)) {
      case "blas":
        return null;
      case "onednn":
        break;
      default:
        throw new IllegalArgumentException(
            FP32_PRODUCTS + "='" + setting + "': expected onednn or blas");
    }
    try {
      OperatorHandle op = Dispatcher.singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
      op.retainReference(); // outlives whatever PointerScope is open on first use
      return op;
    } catch (RuntimeException absent) {
      return null; // a libtorch built without oneDNN: the BLAS serves
    }
  }

  /** What serves FP32 products on the CPU: {@code onednn} or {@code blas}. */
  static String fp32Products() {
    return ONEDNN_LINEAR != null ? "onednn" : "blas";
  }

  private static boolean oneDnn(Tensor x, Tensor w) {
    return ONEDNN_LINEAR != null
        && !x.is_cuda()
        && x.scalar_type().value == ScalarType.Float.value
        && w.scalar_type().value == ScalarType.Float.value
        && w.dim() == 2
        && w.size(0) >= ONEDNN_MIN_SIDE
        && w.size(1) >= ONEDNN_MIN_SIDE;
  }

  /** {@code x W^T (+ b)} in oneDNN, without autograd; x [..., k], w [n, k] (views are fine). */
  private static Tensor oneDnnProduct(Tensor x, Tensor w, Tensor bias) {
    Tensor out;
    try (PointerScope scope = new PointerScope()) {
      GenericList noScalars =
          new GenericList(
              OptionalType.get(new Type.TypePtr(NumberType.getNumberIntTypePtr().get())));
      IValueVector stack =
          new IValueVector(
              new IValue(x),
              new IValue(w),
              bias == null ? new IValue() : new IValue(bias),
              new IValue("none"),
              new IValue(noScalars),
              new IValue());
      ONEDNN_LINEAR.callBoxed(stack);
      // a handle of its own: toTensor's lives in the stack, freed with this scope
      out = Torch.keep(new Tensor(stack.get(0).toTensor()));
    }
    return Torch.handOver(out);
  }

  /** An FP32 {@code x W^T (+ b)}: oneDNN where {@link #oneDnn} says so, with its own backward. */
  private static Tensor fp32Linear(Tensor x, Tensor w, Tensor bias) {
    boolean trained = GradMode.is_enabled() && w.requires_grad();
    // a trained weight's gradient is added to its grad by the backward below: only a leaf's
    // (a parameter's, not a copy's), and only where the input has a gradient to take, which
    // starts that backward (it always has in full fine-tuning)
    if (!oneDnn(x, w) || (trained && (!w.is_leaf() || !x.requires_grad()))) {
      return bias == null ? torch.linear(x, w) : torch.linear(x, w, new TensorOptional(bias));
    }
    boolean grad =
        GradMode.is_enabled()
            && (x.requires_grad() || w.requires_grad() || (bias != null && bias.requires_grad()));
    if (!grad) return oneDnnProduct(x, w, bias);
    Tensor out;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      out = oneDnnProduct(x, w, bias);
    }
    long[] xShape = x.sizes().vec().get();
    Tensor[] inputs = bias == null ? new Tensor[] {x} : new Tensor[] {x, bias};
    if (!trained) {
      // the input only where the weight's gradient needs it (autograd's linear saves no more): a
      // frozen weight's product would otherwise keep every layer's inputs through the forward
      return HookedBackward.attach(
          out,
          inputs,
          new Tensor[] {w},
          (s, gradOut, wanted) -> fp32LinearBackward(null, xShape, s[0], gradOut, wanted));
    }
    // The weight is no input of the hooked function: its gradient goes straight into its grad
    // (set where it has none, added where it has one, as autograd accumulates). Through a link of
    // its own, the link's backward would fill a weight-sized tensor with zeros and grad would copy
    // the gradient once more: bench-m full-fp32 peaked 300 MiB higher with its trained head.
    return HookedBackward.attach(
        out,
        inputs,
        new Tensor[] {x, w},
        (s, gradOut, wanted) -> fp32LinearBackward(s[0], xShape, s[1], gradOut, wanted));
  }

  /**
   * The gradients of x (and the bias: {@code wanted} follows the hooked inputs, x then the bias) of
   * {@code x W^T + b} for {@code dY}, as autograd's; where x is given (a trained weight), the
   * weight's gradient {@code dY^T x} is added to w's grad.
   */
  private static Tensor[] fp32LinearBackward(
      Tensor x, long[] xShape, Tensor w, Tensor gradOut, boolean[] wanted) {
    Tensor[] grads = new Tensor[wanted.length];
    try (PointerScope scope = new PointerScope()) {
      Tensor g =
          gradOut.scalar_type().value == ScalarType.Float.value
              ? gradOut
              : gradOut.to(ScalarType.Float);
      if (wanted[0]) grads[0] = Torch.keep(oneDnnProduct(g, w.t(), null).view(xShape));
      Tensor g2 = g.reshape(-1, g.size(-1));
      if (x != null) {
        Tensor dw = oneDnnProduct(g2.t(), x.reshape(-1, x.size(-1)).t(), null);
        Tensor held = w.grad();
        if (held.defined()) {
          held.add_(dw);
        } else {
          w.mutable_grad().put(dw);
        }
      }
      if (wanted.length > 1 && wanted[1]) {
        grads[1] = Torch.keep(g2.sum(new long[] {0}, false, new ScalarTypeOptional()));
      }
    }
    return grads;
  }

  private static boolean upcastProducts(Tensor x) {
    return !x.is_cuda() && x.scalar_type().value == ScalarType.Half.value;
  }

  /** {@code x W^T (+ b)}. */
  static Tensor linear(Tensor x, Tensor w, Tensor bias) {
    if (upcastProducts(x)) {
      return fp32Linear(
              x.to(ScalarType.Float),
              w.to(ScalarType.Float),
              bias == null ? null : bias.to(ScalarType.Float))
          .to(ScalarType.Half);
    }
    if (x.scalar_type().value == ScalarType.Float.value) return fp32Linear(x, w, bias);
    return bias == null ? torch.linear(x, w) : torch.linear(x, w, new TensorOptional(bias));
  }

  /** {@code a @ b}. */
  static Tensor matmul(Tensor a, Tensor b) {
    if (upcastProducts(a)) {
      return matmul(a.to(ScalarType.Float), b.to(ScalarType.Float)).to(ScalarType.Half);
    }
    if (b.dim() == 2
        && oneDnn(a, b.t())
        && !(GradMode.is_enabled() && (a.requires_grad() || b.requires_grad()))) {
      return oneDnnProduct(a, b.t(), null);
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
