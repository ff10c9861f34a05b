package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Dispatcher;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.IValue;
import org.bytedeco.pytorch.IValueVector;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.OperatorHandle;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * bf16 attention on the CPU with bf16 products (oneDNN's AMX kernels where the CPU has them) and
 * keys and values centred first, so that rounding the scores and the softmax gradient to bf16 costs
 * no more than the bf16 rounding of the inputs and outputs.
 *
 * <p>Rounding is harmful here where many keys (values) share a large common part, as a trained
 * model's do: a score {@code q·k} is then large while the differences between keys, all that the
 * softmax sees, are small, and a bf16 score keeps 8 bits of the large value. The same holds in the
 * backward for {@code dP = dO v^T}, whose softmax backward {@code P (dP - sum(P dP))} keeps only
 * the differences between keys. (Rounded as they are, as transformers' eager attention rounds them,
 * the q gradient comes out 16-20% off in {@code AttentionKernelTest} where values share a common
 * part, 106% where keys do too.) Subtracting from every key its head's mean key changes each score
 * row by one constant, {@code q·mean}, and the softmax not at all; likewise for values and {@code
 * dP}. The bf16 products then round only the differences. The q gradient, {@code dS k}, may use the
 * centred keys too, because each row of {@code dS} sums to zero.
 *
 * <p>Per layer, a forward is {@code S = q kc^T} (the scale folded into the centred keys), the mask
 * added, a softmax (FP32 inside, bf16 out) and {@code P v}; nothing but q, the centred keys and
 * values and the mask is kept for the backward, which computes {@code P} again: {@code dV = P^T
 * dO}, {@code dP = dO vc^T}, {@code dS} by libtorch's softmax backward, {@code dQ = dS kc}, {@code
 * dK = scale dS^T q}. Against libtorch's FP32 flash kernel ({@link FlashCpu}), bench-m's attention
 * (4 × 16 heads × 256 × 64) forward and backward takes 16 instead of 31 ms on the 2-core AMX
 * machine (transformers' eager form: 15 ms in the PyTorch peer). The price is the bf16 rounding of
 * the centred scores, which a peaked softmax feels: in {@code AttentionKernelTest} the output is
 * within 0.2-0.5% of FP64 from the same bf16 inputs and the gradients within 0.2-0.8%, where the
 * FP32 kernel stays within 0.18%.
 *
 * <p>Grouped-query heads share one product with their key/value head ({@code [b * kv, group * t,
 * d]} against {@code [b * kv, d, s]}): keys and values are never repeated. The work is cut along
 * {@code b * kv} into chunks whose score matrix stays within {@link #CHUNK_SCORE_BYTES}; where one
 * head's alone is larger (long sequences), {@link #fits} says no and the caller uses a kernel that
 * never forms it.
 */
final class CenteredAttention {
  private CenteredAttention() {}

  /** The largest bf16 score matrix one chunk forms: 32 MiB. */
  static final long CHUNK_SCORE_BYTES = 32L << 20;

  private static final ScalarType BF16 = ScalarType.BFloat16;

  private static final OperatorHandle SOFTMAX_BACKWARD =
      find("aten::_softmax_backward_data"); // not named by the Java bindings

  private static OperatorHandle find(String name) {
    OperatorHandle op = Dispatcher.singleton().findSchemaOrThrow(name, "");
    op.retainReference(); // outlives whatever PointerScope is open on first use
    return op;
  }

  /** Bytes of the bf16 scores of one key/value head: {@code [group * t, s]}. */
  private static long headScoreBytes(Tensor q, Tensor k) {
    return q.size(1) / k.size(1) * q.size(2) * k.size(2) * 2;
  }

  /** Whether one key/value head's scores fit in {@link #CHUNK_SCORE_BYTES}. */
  static boolean fits(Tensor q, Tensor k) {
    return headScoreBytes(q, k) <= CHUNK_SCORE_BYTES;
  }

  /**
   * Attention of bf16 q [b, heads, t, d] over k, v [b, kvHeads, s, d] with the additive mask {@code
   * bias} (bf16 [group * t, s]: 0 where a query may attend, -inf elsewhere; see {@link
   * Kernels#additiveMask}); bf16 output [b, heads, t, d]. {@link #fits} must hold.
   */
  static Tensor attention(Tensor q, Tensor k, Tensor v, Tensor bias) {
    return attention(q, k, v, bias, CHUNK_SCORE_BYTES);
  }

  /** {@link #attention} in chunks whose scores stay within {@code chunkBytes}. */
  static Tensor attention(Tensor q, Tensor k, Tensor v, Tensor bias, long chunkBytes) {
    double scale = 1.0 / Math.sqrt(q.size(3));
    boolean grad =
        GradMode.is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
    long kv = k.size(1);
    Tensor out;
    Tensor qg;
    Tensor keys;
    Tensor values;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      qg = grouped(q, kv);
      keys = centred(grouped(k, kv), scale);
      Tensor vg = grouped(v, kv); // a copy where v is a transposed view: made once
      out = forward(qg, keys, vg, bias, chunkBytes).view(q.size(0), q.size(1), q.size(2), -1);
      if (!grad) return out;
      values = centred(vg, 1.0);
    }
    long[][] shapes = {q.sizes().vec().get(), k.sizes().vec().get(), v.sizes().vec().get()};
    return HookedBackward.attach(
        out,
        new Tensor[] {q, k, v},
        new Tensor[] {qg, keys, values, bias},
        (s, gradOut, wanted) ->
            backward(s[0], s[1], s[2], s[3], gradOut, wanted, scale, shapes, chunkBytes));
  }

  /** {@code x} [b, n, t, d] as [b * kv, (n / kv) * t, d]: a key/value head's rows together. */
  private static Tensor grouped(Tensor x, long kv) {
    return x.reshape(x.size(0) * kv, -1, x.size(3));
  }

  /** {@code scale (x - mean)} (bf16, rounded once) of x [n, s, d], the mean over s per n. */
  private static Tensor centred(Tensor x, double scale) {
    return Torch.scoped(
        () -> {
          Tensor x32 = x.to(ScalarType.Float);
          x32.sub_(x32.mean(new long[] {1}, true, new ScalarTypeOptional()));
          if (scale != 1.0) x32.mul_(new Scalar(scale));
          return x32.to(BF16);
        });
  }

  /** The bf16 probabilities of a chunk's queries over its centred, scaled keys. */
  private static Tensor probabilities(Tensor q, Tensor keys, Tensor bias) {
    Tensor scores = torch.bmm(q, keys.transpose(1, 2));
    scores.add_(bias);
    return torch.softmax(scores, -1, new ScalarTypeOptional());
  }

  /** Slices of b * kv whose scores make one chunk. */
  private static long chunk(Tensor q, Tensor keys, long chunkBytes) {
    return Math.max(1, chunkBytes / (q.size(1) * keys.size(1) * 2));
  }

  private static Tensor empty(Tensor like) {
    return torch.empty(like.sizes(), new TensorOptions(BF16), new MemoryFormatOptional());
  }

  private static Tensor forward(Tensor q, Tensor keys, Tensor v, Tensor bias, long chunkBytes) {
    long n = q.size(0);
    long step = chunk(q, keys, chunkBytes);
    if (step >= n) return Torch.scoped(() -> torch.bmm(probabilities(q, keys, bias), v));
    Tensor out = empty(q);
    for (long c = 0; c < n; c += step) {
      long len = Math.min(step, n - c);
      try (PointerScope scope = new PointerScope()) {
        Tensor p = probabilities(q.narrow(0, c, len), keys.narrow(0, c, len), bias);
        torch.bmm_out(out.narrow(0, c, len), p, v.narrow(0, c, len));
      }
    }
    return out;
  }

  /**
   * The gradients of q, k, v (bf16, in their input shapes {@code shapes}, held by the caller) for
   * the output gradient; those not {@code wanted} are null.
   */
  private static Tensor[] backward(
      Tensor q,
      Tensor keys,
      Tensor values,
      Tensor bias,
      Tensor gradOut,
      boolean[] wanted,
      double scale,
      long[][] shapes,
      long chunkBytes) {
    Tensor[] grads = new Tensor[3];
    try (PointerScope scope = new PointerScope()) {
      Tensor dO = gradOut.reshape(q.sizes());
      if (dO.scalar_type().value != BF16.value) dO = dO.to(BF16);
      Tensor dq = wanted[0] ? empty(q) : null;
      Tensor dk = wanted[1] ? empty(keys) : null;
      Tensor dv = wanted[2] ? empty(values) : null;
      Tensor zero = torch.zeros(new long[] {1, 1, 1}, new TensorOptions(BF16));
      long n = q.size(0);
      long step = chunk(q, keys, chunkBytes);
      for (long c = 0; c < n; c += step) {
        long len = Math.min(step, n - c);
        try (PointerScope chunkScope = new PointerScope()) {
          Tensor qc = q.narrow(0, c, len);
          Tensor kc = keys.narrow(0, c, len);
          Tensor dOc = dO.narrow(0, c, len);
          Tensor p = probabilities(qc, kc, bias);
          if (dv != null) torch.bmm_out(dv.narrow(0, c, len), p.transpose(1, 2), dOc);
          if (dq == null && dk == null) continue;
          Tensor dP = torch.bmm(dOc, values.narrow(0, c, len).transpose(1, 2));
          Tensor dS = softmaxBackward(dP, p);
          if (dq != null) torch.bmm_out(dq.narrow(0, c, len), dS, kc);
          if (dk != null) {
            torch.baddbmm_out(
                dk.narrow(0, c, len),
                zero,
                dS.transpose(1, 2),
                qc,
                new Scalar(0.0),
                new Scalar(scale));
          }
        }
      }
      Tensor[] full = {dq, dk, dv};
      for (int i = 0; i < 3; i++) {
        if (full[i] != null) grads[i] = Torch.keep(full[i].view(shapes[i]));
      }
    }
    return grads;
  }

  /** {@code p (dP - sum(p dP))} over the last dimension, bf16, computed in FP32 by libtorch. */
  private static Tensor softmaxBackward(Tensor dP, Tensor p) {
    IValueVector stack =
        new IValueVector(new IValue(dP), new IValue(p), new IValue(-1L), new IValue(BF16));
    SOFTMAX_BACKWARD.callBoxed(stack);
    Tensor dS = stack.get(0).toTensor();
    return dS.scalar_type().value == BF16.value ? dS : dS.to(BF16);
  }
}
