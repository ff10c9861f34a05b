package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraWeights;
import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantizedTensor;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.VoidTensorHook;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * A frozen linear layer {@code y = x W^T (+ b)}, optionally with a LoRA pair added as PEFT does:
 * {@code y += scaling * B (A dropout(x))}. Under tensor parallelism it holds only its shard of W; a
 * row-parallel layer holds no bias, because the bias must be added once, after the all-reduce (see
 * {@link Attention}, {@link Mlp}).
 *
 * <p>The frozen weight is dense in the compute dtype, or {@link QuantizedTensor quantized}: then
 * every forward dequantizes it into a temporary that its caller's scope frees, and under autograd
 * the backward dequantizes it again (see {@link #quantizedOutput}). An INT8 weight in bf16 is not
 * dequantized but cast, its scales applied to the product's output channels instead ({@link
 * QuantizedTensor#scalesAfterProduct}).
 *
 * <p>An adapter loaded for inference is owned (and closed) by the layer and already in the compute
 * dtype. Trainable FP32 master weights are lent by the trainer: they are cast to the compute dtype
 * in every forward, so gradients flow back to the masters in FP32.
 */
final class Linear implements AutoCloseable {
  private Tensor weight; // dense, in the compute dtype; null while quantized
  private QuantizedTensor quantized; // null while dense
  private final Tensor bias;
  private LoraWeights lora;
  private boolean ownsLora;
  private double dropout;
  // a row-parallel shard's input: its first feature and the whole layer's count (0: not a shard)
  private long dropoutStart;
  private long dropoutFull;
  private java.util.function.Consumer<Tensor> observer;
  private QuantBackward backward;

  Linear(Tensor weight, Tensor bias) {
    this.weight = weight;
    this.bias = bias;
  }

  /** A layer whose frozen weight is held quantized and dequantized on every forward. */
  Linear(QuantizedTensor quantized, Tensor bias) {
    this.quantized = quantized;
    this.bias = bias;
  }

  /** How the weight is held now. */
  QuantFormat format() {
    return quantized == null ? QuantFormat.NONE : quantized.format();
  }

  /**
   * Replaces the frozen weight: {@code dense} (compute dtype) when {@code format} is NONE, else a
   * quantized copy of it ({@code dense} is not kept). The old weight is freed.
   */
  void requantize(Tensor dense, QuantFormat format) {
    Tensor newWeight = null;
    QuantizedTensor newQuantized = null;
    if (format == QuantFormat.NONE) {
      newWeight = Torch.keep(dense);
    } else {
      newQuantized = QuantizedTensor.quantize(dense, format);
    }
    if (weight != null) weight.close();
    if (quantized != null) quantized.close();
    weight = newWeight;
    quantized = newQuantized;
  }

  /** The dense weight and bias (if any) for full fine-tuning; none while quantized. */
  java.util.List<Tensor> denseParameters() {
    if (quantized != null) throw new IllegalStateException("a quantized layer cannot be trained");
    return bias == null ? java.util.List.of(weight) : java.util.List.of(weight, bias);
  }

  /** Bytes the frozen weight holds. */
  long weightBytes() {
    return quantized != null ? quantized.bytes() : weight.nbytes();
  }

  /** Attaches a LoRA pair; {@code owned} ones are closed with the layer. */
  void attach(LoraWeights lora, boolean owned) {
    detach();
    this.lora = lora;
    this.ownsLora = owned;
  }

  void detach() {
    if (lora != null && ownsLora) lora.close();
    lora = null;
  }

  /** Dropout on the adapter input while training; 0 for inference. */
  void dropout(double p) {
    this.dropout = p;
    this.dropoutStart = 0;
    this.dropoutFull = 0;
  }

  /**
   * Dropout on the adapter input of a row-parallel shard whose input is features {@code [start,
   * start + n)} of {@code full}: its mask is that part of the whole layer's.
   */
  void dropout(double p, long start, long full) {
    this.dropout = p;
    this.dropoutStart = start;
    this.dropoutFull = full;
  }

  LoraWeights lora() {
    return lora;
  }

  /**
   * The frozen weight in the compute dtype {@code dtype}: the held tensor itself when dense, a new
   * dequantized one (freed with the caller's scope) when quantized.
   */
  Tensor weight(ScalarType dtype) {
    if (quantized != null) return quantized.dequantize(dtype);
    return weight.scalar_type().value == dtype.value ? weight : weight.to(dtype);
  }

  /** The base output {@code x W^T (+ b)} alone, without the adapter. */
  Tensor base(Tensor x) {
    return base(x, true);
  }

  /**
   * {@link #base(Tensor)}; with {@code scaled} false, where the weight's scales are applied after
   * the product ({@link QuantizedTensor#scalesAfterProduct}), the product with the codes alone, its
   * output channels not yet scaled and no bias added.
   */
  private Tensor base(Tensor x, boolean scaled) {
    if (quantized == null) return Kernels.linear(x, weight(x.scalar_type()), bias);
    boolean scaleAfter = quantized.scalesAfterProduct(x.scalar_type());
    // the weight is freed at once rather than with the caller's scope (the layer's), which would
    // keep all of a layer's; autograd keeps its own reference where it needs one
    Tensor w =
        scaleAfter ? quantized.codes(x.scalar_type()) : quantized.dequantize(x.scalar_type());
    Tensor y;
    try {
      y = Kernels.linear(x, w, scaleAfter ? null : bias);
    } finally {
      w.close();
    }
    if (scaleAfter && scaled) {
      // in place: y is the product's own new output, which no backward keeps
      y = y.mul_(quantized.bf16Scales());
      if (bias != null) y = y.add_(bias);
    }
    return y;
  }

  /** Sees the input of every forward until cleared with null (calibration). */
  void observe(java.util.function.Consumer<Tensor> observer) {
    this.observer = observer;
  }

  /** The layer's output; what it makes on the way (the LoRA branch, the hook's link) is freed. */
  Tensor forward(Tensor x) {
    if (observer != null) observer.accept(x);
    return Torch.scoped(() -> compute(x));
  }

  private Tensor compute(Tensor x) {
    if (quantized != null) return quantizedOutput(x, GradMode.is_enabled() && x.requires_grad());
    Tensor y = base(x);
    return lora == null ? y : y.add_(loraDelta(x, 1.0), Torch.scalar(lora.scaling()));
  }

  /**
   * The adapter's {@code B (scale · A dropout(x))} in {@code x}'s dtype: the scale, where not 1, on
   * the rank-r intermediate, where it costs a pass over r values a row rather than over the output.
   */
  private Tensor loraDelta(Tensor x, double scale) {
    Tensor a = lora.a();
    Tensor b = lora.b();
    if (a.scalar_type().value != x.scalar_type().value) {
      a = a.to(x.scalar_type());
      b = b.to(x.scalar_type());
    }
    Tensor in =
        dropout <= 0
            ? x
            : dropoutFull > 0
                ? Torch.dropout(x, dropout, dropoutStart, dropoutFull)
                : Torch.dropout(x, dropout);
    Tensor h = Kernels.linear(in, a, null);
    if (scale != 1.0) h = h.mul(Torch.scalar(scale));
    return Kernels.linear(h, b, null);
  }

  /**
   * A quantized layer's output, adapter included; under autograd ({@code hooked}) without letting
   * autograd keep the dequantized weight until the backward pass (a whole dense model's worth over
   * all layers). libtorch's C++ custom autograd functions are not reachable from Java, so the
   * backward is made with two gradient hooks instead: the base output is computed without autograd
   * and tied to an alias {@code x'} of {@code x} by a link; a hook on {@code y} keeps {@code
   * dL/dy}, and a hook on {@code x'}, which autograd reaches next, puts {@code dL/dy · Ŵ} with
   * {@code Ŵ} dequantized again into the gradient of {@code x}, as bitsandbytes does. The link is
   * the adapter's branch where the layer carries one, {@code y = base(x) + B (scaling · A
   * dropout(x'))}, and the hook adds to the gradient the branch brings; without an adapter it is a
   * zero term, {@code y = base(x) + 0·x'[..., :1]}, whose (zero) gradient the hook replaces.
   *
   * <p>Where the scales come after the product (INT8 in bf16) and there is no bias, the scaling and
   * the link are one {@code addcmul(link, x qᵀ, s)}: one pass over the output instead of a
   * multiplication and an addition, rounded once. The adapter's scaling sits on its rank-r
   * intermediate, so that autograd does not multiply the whole output gradient by it for the
   * branch.
   *
   * <p>Without autograd ({@code hooked} false) the output is computed in the same operations, less
   * the hooks and the zero link, so that a layer recomputed for its backward (gradient
   * checkpointing) gives the same values as its first forward ({@code QuantizedTrainingTest}).
   */
  private Tensor quantizedOutput(Tensor x, boolean hooked) {
    boolean fused = bias == null && quantized.scalesAfterProduct(x.scalar_type());
    Tensor product;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      product = base(x, !fused);
    }
    Tensor in = x;
    if (hooked) {
      if (backward == null) backward = new QuantBackward();
      in = x.alias();
      in.register_hook(lora == null ? backward.inputGradient : backward.addInputGradient);
    }
    Tensor term =
        lora != null
            ? loraDelta(in, lora.scaling())
            : hooked ? in.narrow(-1, 0, 1).mul(Torch.scalar(0.0)) : null;
    Tensor y;
    if (term == null) {
      y = fused ? product.mul_(quantized.bf16Scales()) : product;
    } else if (fused) {
      y = torch.addcmul(term, product, quantized.bf16Scales());
    } else {
      // out of place under autograd: the base output can be a view made without autograd, which
      // autograd does not let an in-place operation change (the adapter of a layer whose input
      // needs no gradient still trains)
      y = hooked || term.requires_grad() ? product.add(term) : product.add_(term);
    }
    if (hooked) y.register_hook(backward.keepGradient);
    return y;
  }

  /**
   * The input gradient the last hook returned, on this thread (backward passes run on the thread
   * that started them). libtorch copies the handle when the hook returns, so this one is freed at
   * the next hook call of any layer: one stays alive, not one per layer.
   */
  private static final ThreadLocal<Tensor> LAST_INPUT_GRADIENT = new ThreadLocal<>();

  /**
   * The hooks of {@link #quantizedOutput}. closeArgument: JavaCPP hands a hook its argument (a
   * gradient, taken by value) as a new Java-owned tensor handle, which joins the innermost open
   * {@link PointerScope}: the trainer's microbatch scope. Left to it, every hooked gradient of the
   * backward pass stayed alive until the microbatch ended (bench-m lora-int8: 140 MiB more at the
   * end of the backward than at its start), so each hook closes its argument.
   */
  private final class QuantBackward {
    private Tensor gradOutput;

    final VoidTensorHook keepGradient =
        new VoidTensorHook() {
          @Override
          public void call(TensorBase grad) {
            if (gradOutput != null) gradOutput.close();
            gradOutput = Torch.own(grad);
            grad.close(); // see closeArgument
          }
        };

    /** Replaces the zero link's gradient by the base's input gradient. */
    final TensorTensorHook inputGradient =
        new TensorTensorHook() {
          @Override
          public TensorBase call(TensorBase ignored) {
            ignored.close(); // see closeArgument
            return baseInputGradient(null);
          }
        };

    /** Adds the base's input gradient to the one the adapter's branch brought the link. */
    final TensorTensorHook addInputGradient =
        new TensorTensorHook() {
          @Override
          public TensorBase call(TensorBase fromAdapter) {
            try {
              return baseInputGradient(fromAdapter);
            } finally {
              fromAdapter.close(); // see closeArgument
            }
          }
        };

    /** {@code dL/dy · Ŵ}, plus {@code plus} where given; freed at the next hook call. */
    private Tensor baseInputGradient(TensorBase plus) {
      if (gradOutput == null) {
        throw new IllegalStateException("the output gradient of a quantized layer is missing");
      }
      Tensor next;
      try (PointerScope scope = new PointerScope()) {
        ScalarType dtype = gradOutput.scalar_type();
        // dL/dx = dL/dy · diag(s) q where the forward scaled after the product
        next =
            quantized.scalesAfterProduct(dtype)
                ? Kernels.matmul(gradOutput.mul(quantized.bf16Scales()), quantized.codes(dtype))
                : Kernels.matmul(gradOutput, quantized.dequantize(dtype));
        if (plus != null) next.add_(new Tensor(plus));
        next = Torch.keep(next);
      }
      gradOutput.close();
      gradOutput = null;
      Tensor previous = LAST_INPUT_GRADIENT.get();
      if (previous != null) previous.close();
      LAST_INPUT_GRADIENT.set(next);
      return next;
    }

    QuantBackward() {
      // made during a forward, inside its layer's PointerScope: the hooks must outlive it
      keepGradient.retainReference();
      inputGradient.retainReference();
      addInputGradient.retainReference();
    }

    void close() {
      if (gradOutput != null) gradOutput.close();
      keepGradient.close();
      inputGradient.close();
      addInputGradient.close();
    }
  }

  @Override
  public void close() {
    if (backward != null) backward.close();
    if (weight != null) weight.close();
    if (quantized != null) quantized.close();
    if (bias != null) bias.close();
    detach();
  }
}
