package dev.troupe.pipeline.train;

import dev.troupe.pipeline.safetensors.TensorData;
import java.util.Objects;
import java.util.SortedMap;

/**
 * The trainable state of a run after {@code step} steps, held in memory: what a checkpoint keeps,
 * without the files. Device actors keep such copies on other nodes after every step, so that a run
 * that loses its device continues from the last committed step instead of the last checkpoint.
 *
 * @param tensors the LoRA pairs (PEFT names) and AdamW's moments ({@code exp_avg.NAME}, {@code
 *     exp_avg_sq.NAME}), as a checkpoint keys them
 * @param optimizerStep AdamW's step count
 * @param quantization each quantized layer's format and calm-check count ({@code QuantState}'s
 *     JSON), empty where the base is not quantized
 */
public record StateCopy(
    long step,
    SortedMap<String, TensorData> tensors,
    long optimizerStep,
    double lossScale,
    int growthTracker,
    String quantization) {

  public StateCopy {
    Objects.requireNonNull(tensors, "tensors");
    Objects.requireNonNull(quantization, "quantization");
    if (step < 0) throw new IllegalArgumentException("negative step " + step);
  }
}
