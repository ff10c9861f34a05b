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
   * The summed cross-entropy of float32 logits [rows, vocab] against {@link #shifted} targets
   * [rows], and its gradient times {@code weight}, written over the logits: {@code weight *
   * (softmax(logits) - onehot(target))} on rows with a target, 0 on ignored rows. What autograd
   * computes through {@link #sumFlat} and a backward from {@code weight * sum}, without the
   * log-probabilities and the gradients of them that autograd keeps and makes (three more tensors
   * the size of the logits). Returns the sum.
   */
  public static double sumAndGradientInPlace(Tensor logits, Tensor targets, double weight) {
    if (logits.scalar_type().value != ScalarType.Float.value) {
      throw new IllegalArgumentException("float32 logits expected, got " + logits.scalar_type());
    }
    Tensor valid = targets.ne(Torch.scalar(IGNORE));
    Tensor ignored = valid.logical_not();
    Tensor index = targets.masked_fill(ignored, Torch.scalar(0)).unsqueeze(1);
    // log-probabilities in place, by libtorch's own kernel as cross_entropy computes them: one
    // fused pass for the maxima and sums of each row, one to write them (the kernel reads and
    // writes each value in the same pass, so the output may be its input)
    torch.log_softmax_out(logits, logits, 1);
    Tensor rowLoss = logits.gather(1, index).squeeze(1).neg_();
    double sum = rowLoss.masked_fill(ignored, Torch.scalar(0.0)).sum().item_double();
    // log_softmax's backward for an output gradient of -weight at the target, as autograd forms
    // it: weight * exp(log p) - weight at the target
    Tensor rowWeight = valid.to(ScalarType.Float).mul_(Torch.scalar(weight)).unsqueeze(1);
    logits.exp_().mul_(rowWeight);
    logits.scatter_add_(1, index, rowWeight.neg());
    return sum;
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
        shiftedLogits.scalar_type().value == ScalarType.Float.value
            ? shiftedLogits
            : shiftedLogits.to(ScalarType.Float);
    return torch.cross_entropy_loss(
        input, shiftedLabels, new TensorOptional(), REDUCTION_SUM, IGNORE, 0.0);
  }
}
