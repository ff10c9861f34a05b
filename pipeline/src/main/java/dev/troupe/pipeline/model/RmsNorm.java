package dev.troupe.pipeline.model;

import org.bytedeco.pytorch.Scalar;
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
    if (in == ScalarType.Float) {
      Tensor variance = x.mul(x).mean(new long[] {-1}, true, new ScalarTypeOptional());
      return weight.mul(x.mul(torch.rsqrt(variance.add(new Scalar(eps)))));
    }
    // The statistics in FP32 without an FP32 copy of x that autograd would keep (4 bytes a value
    // per norm and layer): the norm's sum of squares runs in FP32 over the bf16/fp16 values, and
    // the product x * rsqrt(...) promotes to FP32, so autograd keeps x itself. Same values as
    // mean(x.float()^2) up to the rounding of the norm's square root.
    Tensor norm =
        torch.linalg_vector_norm(
            x, new Scalar(2.0), new long[] {-1}, true, new ScalarTypeOptional(ScalarType.Float));
    Tensor variance = norm.mul(norm).div(new Scalar((double) x.size(-1)));
    Tensor normed = x.mul(torch.rsqrt(variance.add(new Scalar(eps))));
    return weight.mul(normed.to(in));
  }

  @Override
  public void close() {
    weight.close();
  }
}
