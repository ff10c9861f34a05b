package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.BlasThreads;
import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Dispatcher;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.IValue;
import org.bytedeco.pytorch.IValueVector;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.OperatorHandle;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Causal attention on the CPU through libtorch's FP32 flash-attention kernel, with a backward of
 * its own: the form {@link Kernels} uses in FP32 and fp16, and in bf16 where one head's score
 * matrix is too large for {@link CenteredAttention} (long sequences). In FP32 and fp16 it computes
 * what libtorch's {@code scaled_dot_product_attention} computes (the same kernel, to the bit), but
 * runs the kernel with OpenBLAS on each of its threads alone ({@link BlasThreads#onCallingThread}):
 * the kernel multiplies block by block inside its own parallel loop, and through autograd each of
 * those products split itself over OpenBLAS's workers again. The kernel ({@code
 * aten::_scaled_dot_product_flash_attention_for_cpu} and its backward, which the Java bindings do
 * not name, so they are called through the dispatcher) works block by block with an online softmax
 * and skips the blocks above the diagonal; its scores, probabilities and products stay FP32, and no
 * probability matrix is ever formed. At bench-m's size (4 × 16 heads × 256 × 64, forward and
 * backward) it takes 31 ms on the 2-core AMX machine, where {@link CenteredAttention} takes 16.
 *
 * <p>In bf16, autograd through the kernel would keep FP32 copies of q, k and v; this keeps the bf16
 * inputs, the FP32 output and the row log-sum-exps, and makes the FP32 copies again in the
 * backward. The output stays FP32 because the backward forms {@code sum(dO * O)} from it, a value
 * the softmax backward subtracts from {@code dO v^T}, where a bf16 rounding loses the small
 * differences between keys (see {@link CenteredAttention}). Grouped-query heads: k and v are
 * repeated per query head for the kernel, and their gradients summed over each group.
 */
final class FlashCpu {
  private FlashCpu() {}

  private static final OperatorHandle FORWARD =
      find("aten::_scaled_dot_product_flash_attention_for_cpu");
  private static final OperatorHandle BACKWARD =
      find("aten::_scaled_dot_product_flash_attention_for_cpu_backward");

  private static OperatorHandle find(String name) {
    try {
      OperatorHandle op = Dispatcher.singleton().findSchemaOrThrow(name, "");
      op.retainReference(); // outlives whatever PointerScope is open on first use
      return op;
    } catch (RuntimeException e) {
      return null; // a libtorch without the operator: libtorch's own attention is used
    }
  }

  /** Whether this libtorch has the kernel and its backward. */
  static boolean available() {
    return FORWARD != null && BACKWARD != null;
  }

  /**
   * Causal attention of q [b, heads, t, d] over k, v [b, kvHeads, t, d] (bf16, fp16 or FP32), the
   * output in q's dtype. The kernel runs with OpenBLAS on each calling thread alone ({@link
   * BlasThreads#onCallingThread}): it multiplies block by block inside its own parallel loop.
   */
  static Tensor attention(Tensor q, Tensor k, Tensor v) {
    ScalarType dtype = q.scalar_type();
    boolean grad =
        GradMode.is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
    if (!grad) {
      try (NoGradGuard noGrad = new NoGradGuard()) {
        return BlasThreads.onCallingThread(() -> forward(q, k, v))[0].to(dtype);
      }
    }
    Tensor[] r;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      r = BlasThreads.onCallingThread(() -> forward(q, k, v));
    }
    return HookedBackward.attach(
        r[0].to(dtype),
        new Tensor[] {q, k, v},
        new Tensor[] {q, k, v, r[0], r[1]},
        (s, gradOut, wanted) ->
            BlasThreads.onCallingThread(
                () -> backward(s[0], s[1], s[2], s[3], s[4], gradOut, wanted)));
  }

  /** {@code x} [b, kv, t, d] as FP32 [b, kv * group, t, d], each key/value head repeated. */
  private static Tensor perQueryHead(Tensor x, long group) {
    Tensor x32 = x.to(ScalarType.Float);
    if (group == 1) return x32;
    long b = x.size(0), kv = x.size(1), t = x.size(2), d = x.size(3);
    return x32.unsqueeze(2).expand(b, kv, group, t, d).reshape(b, kv * group, t, d);
  }

  /** The FP32 output [b, heads, t, d] and the row log-sum-exps [b, heads, t]. */
  private static Tensor[] forward(Tensor q, Tensor k, Tensor v) {
    long group = q.size(1) / k.size(1);
    IValueVector stack =
        new IValueVector(
            new IValue(q.to(ScalarType.Float)),
            new IValue(perQueryHead(k, group)),
            new IValue(perQueryHead(v, group)),
            new IValue(0.0), // dropout
            new IValue(true), // causal
            new IValue(), // no mask
            new IValue()); // the default scale, 1 / sqrt(d)
    FORWARD.callBoxed(stack);
    return new Tensor[] {stack.get(0).toTensor(), stack.get(1).toTensor()};
  }

  private static Tensor[] backward(
      Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor gradOut, boolean[] wanted) {
    Tensor[] grads = new Tensor[3];
    try (PointerScope scope = new PointerScope()) {
      long group = q.size(1) / k.size(1);
      IValueVector stack =
          new IValueVector(
              new IValue(gradOut.to(ScalarType.Float)),
              new IValue(q.to(ScalarType.Float)),
              new IValue(perQueryHead(k, group)),
              new IValue(perQueryHead(v, group)),
              new IValue(out),
              new IValue(lse),
              new IValue(0.0),
              new IValue(true),
              new IValue(),
              new IValue());
      BACKWARD.callBoxed(stack);
      for (int i = 0; i < 3; i++) {
        if (!wanted[i]) continue;
        Tensor g = stack.get(i).toTensor();
        if (i > 0 && group > 1) {
          g = g.reshape(k.size(0), k.size(1), group, k.size(2), k.size(3)).sum(new long[] {2});
        }
        grads[i] = Torch.keep(g.to(q.scalar_type()));
      }
    }
    return grads;
  }
}
