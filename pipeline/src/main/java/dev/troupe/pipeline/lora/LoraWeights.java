package dev.troupe.pipeline.lora;

import org.bytedeco.pytorch.Tensor;

/**
 * One LoRA pair on a linear layer, as PEFT defines it: {@code y = W x + scaling * B (A x)} with
 * {@code A} of shape [r, in] and {@code B} of shape [out, r].
 */
public record LoraWeights(Tensor a, Tensor b, double scaling) implements AutoCloseable {
  @Override
  public void close() {
    a.close();
    b.close();
  }
}
