package dev.troupe.pipeline.train;

import dev.troupe.pipeline.engine.Torch;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * torch.optim.AdamW, single-tensor form, in FP32: decoupled weight decay, then bias-corrected first
 * and second moments:
 *
 * <pre>
 *   p -= lr * wd * p
 *   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
 *   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * </pre>
 *
 * Its state (the moments and the step count) is what a checkpoint keeps.
 */
public final class AdamW implements AutoCloseable {
  private final double beta1;
  private final double beta2;
  private final double eps;
  private final double weightDecay;
  private final List<Tensor> expAvg = new ArrayList<>();
  private final List<Tensor> expAvgSq = new ArrayList<>();
  private long step;

  public AdamW(List<Tensor> params, double beta1, double beta2, double eps, double weightDecay) {
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.weightDecay = weightDecay;
    for (Tensor p : params) {
      expAvg.add(Torch.keep(torch.zeros_like(p.detach())));
      expAvgSq.add(Torch.keep(torch.zeros_like(p.detach())));
    }
  }

  /** Applies one update with these gradients (already unscaled and clipped). */
  public void step(List<Tensor> params, List<Tensor> grads, double lr) {
    step++;
    double bc1 = 1 - Math.pow(beta1, step);
    double bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
    double stepSize = lr / bc1;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      for (int i = 0; i < params.size(); i++) {
        Tensor p = params.get(i);
        Tensor g = grads.get(i);
        Tensor m = expAvg.get(i);
        Tensor v = expAvgSq.get(i);
        // multiplying by exactly 1 changes nothing: skip the pass without weight decay
        if (weightDecay != 0) p.mul_(Torch.scalar(1 - lr * weightDecay));
        m.mul_(Torch.scalar(beta1)).add_(g, Torch.scalar(1 - beta1));
        v.mul_(Torch.scalar(beta2)).addcmul_(g, g, Torch.scalar(1 - beta2));
        try (Tensor denom = v.sqrt()) { // one temporary, updated in place
          denom.div_(Torch.scalar(bc2Sqrt)).add_(Torch.scalar(eps));
          p.addcdiv_(m, denom, Torch.scalar(-stepSize));
        }
      }
    }
  }

  public long stepCount() {
    return step;
  }

  public List<Tensor> expAvg() {
    return expAvg;
  }

  public List<Tensor> expAvgSq() {
    return expAvgSq;
  }

  /** Restores moments and step count from a checkpoint. */
  public void restore(List<Tensor> m, List<Tensor> v, long step) {
    try (NoGradGuard noGrad = new NoGradGuard()) {
      for (int i = 0; i < expAvg.size(); i++) {
        expAvg.get(i).copy_(m.get(i));
        expAvgSq.get(i).copy_(v.get(i));
      }
    }
    this.step = step;
  }

  @Override
  public void close() {
    expAvg.forEach(Tensor::close);
    expAvgSq.forEach(Tensor::close);
  }
}
