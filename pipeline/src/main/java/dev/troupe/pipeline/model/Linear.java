package dev.troupe.pipeline.model;

import dev.troupe.pipeline.lora.LoraWeights;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;

/**
 * A frozen linear layer {@code y = x W^T (+ b)}, optionally with a LoRA pair added. Under tensor
 * parallelism it holds only its shard of W; a row-parallel layer holds no bias, because the bias
 * must be added once, after the all-reduce (see {@link Attention}, {@link Mlp}).
 */
final class Linear implements AutoCloseable {
  private final Tensor weight;
  private final Tensor bias;
  private LoraWeights lora;

  Linear(Tensor weight, Tensor bias) {
    this.weight = weight;
    this.bias = bias;
  }

  void attach(LoraWeights lora) {
    if (this.lora != null) this.lora.close();
    this.lora = lora;
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
      // scaling * B (A x); dropout on the adapter input is a training concern, identity here.
      Tensor down = torch.linear(x, lora.a());
      Tensor up = torch.linear(down, lora.b());
      y.add_(up, new org.bytedeco.pytorch.Scalar(lora.scaling()));
    }
    return y;
  }

  @Override
  public void close() {
    weight.close();
    if (bias != null) bias.close();
    if (lora != null) lora.close();
  }
}
