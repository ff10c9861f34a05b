package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraTarget;
import java.util.function.BiConsumer;
import org.bytedeco.pytorch.Tensor;

/** One pre-norm decoder layer: {@code h = x + attn(norm(x)); out = h + mlp(norm(h))}. */
final class DecoderLayer implements AutoCloseable {
  final RmsNorm inputNorm;
  final Attention attention;
  final RmsNorm postAttentionNorm;
  final Mlp mlp;
  private final TensorParallel.Input attentionInput = new TensorParallel.Input();
  private final TensorParallel.Input mlpInput = new TensorParallel.Input();

  DecoderLayer(RmsNorm inputNorm, Attention attention, RmsNorm postAttentionNorm, Mlp mlp) {
    this.inputNorm = inputNorm;
    this.attention = attention;
    this.postAttentionNorm = postAttentionNorm;
    this.mlp = mlp;
  }

  /** The linear layer LoRA calls {@code target}. */
  Linear linear(LoraTarget target) {
    return switch (target) {
      case Q_PROJ -> attention.q;
      case K_PROJ -> attention.k;
      case V_PROJ -> attention.v;
      case O_PROJ -> attention.o;
      case GATE_PROJ -> mlp.gate;
      case UP_PROJ -> mlp.up;
      case DOWN_PROJ -> mlp.down;
    };
  }

  Tensor forward(Tensor x, Rotary rope, Tensor mask, AllReduce reduce) {
    // under tensor parallelism each branch's input gradient is a partial sum: mark() reduces it.
    // Each branch's intermediates are freed when it returns, not with the layer.
    Tensor h =
        Torch.scoped(
            () ->
                x.add(
                    attention.forward(
                        attentionInput.mark(inputNorm.forward(x), reduce), rope, mask, reduce)));
    return Torch.scoped(
        () -> h.add(mlp.forward(mlpInput.mark(postAttentionNorm.forward(h), reduce), reduce)));
  }

  /** {@link #forward}, showing each linear layer's input to {@code sink}. */
  Tensor forwardCapturing(
      Tensor x, Rotary rope, Tensor mask, AllReduce reduce, BiConsumer<LoraTarget, Tensor> sink) {
    try {
      for (LoraTarget t : LoraTarget.values()) {
        linear(t).observe(in -> sink.accept(t, in));
      }
      return forward(x, rope, mask, reduce);
    } finally {
      for (LoraTarget t : LoraTarget.values()) {
        linear(t).observe(null);
      }
    }
  }

  @Override
  public void close() {
    attentionInput.close();
    mlpInput.close();
    inputNorm.close();
    attention.close();
    postAttentionNorm.close();
    mlp.close();
  }
}
