package dev.troupe.pipeline.train;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Hugging Face's causal-LM loss: the logits at position t predict the label at t+1, labels of -100
 * are ignored. Returns the SUM of token cross-entropies; the trainer divides by the number of label
 * tokens of the whole global batch, so that a step's loss does not depend on how the batch is cut
 * into microbatches (or, later, replicas, stages and shards).
 */
public final class CausalLmLoss {
  /** The label that marks a position outside the loss. */
  public static final long IGNORE = -100;

  private static final long REDUCTION_SUM = 2; // at::Reduction::Sum

  private CausalLmLoss() {}

  /**
   * Labels moved one position left within each sequence, the last position ignored: the target of
   * position t is label t+1, so that rows can be scored independently.
   */
  public static Tensor shifted(Tensor labels) {
    long seq = labels.size(1);
    Tensor out = torch.full_like(labels, Torch.scalar(IGNORE));
    if (seq > 1) out.narrow(1, 0, seq - 1).copy_(labels.narrow(1, 1, seq - 1));
    return out;
  }

  /**
   * Summed cross-entropy of logits [rows, vocab] (any float dtype; computed in float32) against
   * already {@link #shifted} targets [rows].
   */
  public static Tensor sumFlat(Tensor logits, Tensor targets) {
    Tensor input =
        logits.scalar_type().value == ScalarType.Float.value ? logits : logits.to(ScalarType.Float);
    return torch.cross_entropy_loss(
        input, targets, new TensorOptional(), REDUCTION_SUM, IGNORE, 0.0);
  }

  /**
   * @param logits float32 [batch, seq, vocab]
   * @param labels int64 [batch, seq]
   * @return a float32 scalar: the summed cross-entropy over label tokens
   */
  public static Tensor sum(Tensor logits, Tensor labels) {
    long seq = logits.size(1);
    long vocab = logits.size(2);
    Tensor shiftedLogits = logits.narrow(1, 0, seq - 1).reshape(-1, vocab);
    Tensor shiftedLabels = labels.narrow(1, 1, seq - 1).reshape(-1);
    Tensor input =
        shiftedLogits.scalar_type() == ScalarType.Float
            ? shiftedLogits
            : shiftedLogits.to(ScalarType.Float);
    return torch.cross_entropy_loss(
        input, shiftedLabels, new TensorOptional(), REDUCTION_SUM, IGNORE, 0.0);
  }
}
