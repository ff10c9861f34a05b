package dev.troupe.pipeline.train;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraParameters;
import dev.troupe.pipeline.model.AllReduce;
import dev.troupe.pipeline.model.CausalLm;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * One optimizer step of LoRA training on one device: forward and backward over the microbatches of
 * a global batch (gradients accumulate in the FP32 masters), then unscale, check for inf/NaN, clip
 * by global norm, and update with AdamW.
 */
public final class TrainStep {
  private TrainStep() {}

  /**
   * What a step did.
   *
   * @param loss mean cross-entropy over the step's label tokens
   * @param gradNorm global L2 norm of the (unscaled) gradients before clipping
   * @param skipped true where the gradients held inf or NaN and the update was skipped
   */
  public record Result(double loss, double gradNorm, long tokens, boolean skipped) {}

  /**
   * @param lossScale the fp16 loss scale (1 in fp32 and bf16)
   * @param maxGradNorm clip threshold; 0 = no clipping
   */
  public static Result run(
      CausalLm model,
      LoraParameters lora,
      AdamW optimizer,
      List<Batch> microbatches,
      double lr,
      double maxGradNorm,
      double lossScale) {
    long tokens = microbatches.stream().mapToLong(Batch::labelTokens).sum();
    List<Tensor> params = lora.parameters();
    double lossSum = 0;
    for (Batch b : microbatches) {
      // One scope per microbatch: its activations are freed as soon as its backward is done.
      try (PointerScope scope = new PointerScope()) {
        Tensor ids = Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen());
        Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
        Tensor logits = model.logits(model.forwardLayers(model.embed(ids), AllReduce.NONE));
        Tensor sum = CausalLmLoss.sum(logits, labels);
        lossSum += sum.item_double(); // host waits for this microbatch's forward here
        if (tokens > 0) {
          // d(step loss)/d(theta) accumulates over microbatches: each contributes sum / all tokens.
          sum.mul(Torch.scalar(lossScale / tokens)).backward();
        }
      }
    }
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      List<Tensor> grads = new ArrayList<>();
      for (Tensor p : params) {
        Tensor g = p.grad();
        grads.add(g.defined() ? g : torch.zeros_like(p));
      }
      if (lossScale != 1.0) grads.forEach(g -> g.mul_(Torch.scalar(1.0 / lossScale)));
      double sq = 0;
      for (Tensor g : grads) {
        double n = torch.linalg_vector_norm(g).item_double();
        sq += n * n;
      }
      double norm = Math.sqrt(sq);
      boolean finite = Double.isFinite(norm);
      if (finite && tokens > 0) {
        if (maxGradNorm > 0) {
          double coef = maxGradNorm / (norm + 1e-6); // torch.nn.utils.clip_grad_norm_
          if (coef < 1) grads.forEach(g -> g.mul_(Torch.scalar(coef)));
        }
        optimizer.step(params, grads, lr);
      }
      for (Tensor p : params) {
        Tensor g = p.grad();
        if (g.defined()) g.zero_();
      }
      return new Result(tokens > 0 ? lossSum / tokens : 0.0, norm, tokens, !finite);
    }
  }
}
