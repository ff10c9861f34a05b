package dev.troupe.pipeline.model;

import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Root-mean-square layer norm as Hugging Face's LlamaRMSNorm computes it: the statistics in float32
 * whatever the compute dtype, the result cast back before it is scaled by the weight.
 */
final class RmsNorm implements AutoCloseable {
  private final Tensor weight;
  private final double eps;

  RmsNorm(Tensor weight, double eps) {
    this.weight = weight;
    this.eps = eps;
  }

  Tensor weight() {
    return weight;
  }

  Tensor forward(Tensor x) {
    ScalarType in = x.scalar_type();
    Tensor xf = in == ScalarType.Float ? x : x.to(ScalarType.Float);
    Tensor variance = xf.mul(xf).mean(new long[] {-1}, true, new ScalarTypeOptional());
    Tensor normed = xf.mul(torch.rsqrt(variance.add(new org.bytedeco.pytorch.Scalar(eps))));
    return weight.mul(in == ScalarType.Float ? normed : normed.to(in));
  }

  @Override
  public void close() {
    weight.close();
  }
}
