package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraWeights;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;

/**
 * A frozen linear layer {@code y = x W^T (+ b)}, optionally with a LoRA pair added as PEFT does:
 * {@code y += scaling * B (A dropout(x))}. Under tensor parallelism it holds only its shard of W; a
 * row-parallel layer holds no bias, because the bias must be added once, after the all-reduce (see
 * {@link Attention}, {@link Mlp}).
 *
 * <p>An adapter loaded for inference is owned (and closed) by the layer and already in the compute
 * dtype. Trainable FP32 master weights are lent by the trainer: they are cast to the compute dtype
 * in every forward, so gradients flow back to the masters in FP32.
 */
final class Linear implements AutoCloseable {
  private final Tensor weight;
  private final Tensor bias;
  private LoraWeights lora;
  private boolean ownsLora;
  private double dropout;

  Linear(Tensor weight, Tensor bias) {
    this.weight = weight;
    this.bias = bias;
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
  }

  LoraWeights lora() {
    return lora;
  }

  Tensor weight() {
    return weight;
  }

  Tensor forward(Tensor x) {
    Tensor y =
        bias == null ? torch.linear(x, weight) : torch.linear(x, weight, new TensorOptional(bias));
    if (lora != null) {
      Tensor a = lora.a();
      Tensor b = lora.b();
      if (a.scalar_type() != x.scalar_type()) {
        a = a.to(x.scalar_type());
        b = b.to(x.scalar_type());
      }
      Tensor in = dropout > 0 ? torch.dropout(x, dropout, true) : x;
      y.add_(torch.linear(torch.linear(in, a), b), Torch.scalar(lora.scaling()));
    }
    return y;
  }

  @Override
  public void close() {
    weight.close();
    if (bias != null) bias.close();
    detach();
  }
}
