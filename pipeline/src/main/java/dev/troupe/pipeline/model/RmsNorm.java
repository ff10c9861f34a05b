package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Root-mean-square layer norm as Hugging Face's LlamaRMSNorm computes it: the statistics in float32
 * whatever the compute dtype, the result cast back before it is scaled by the weight.
 *
 * <p>In bf16 or fp16 with a frozen weight, under autograd, the norm has a backward of its own
 * ({@link HookedBackward}) that keeps only the input: autograd through the operations keeps the
 * input's FP32 copy, twice the input's size (bench-m: 4 MiB against 2 MiB a norm, two norms a
 * layer). The backward computes the FP32 statistics again and the gradient autograd would, {@code
 * dx = r (g - x̂ mean(g x̂))} with {@code r = 1 / sqrt(mean(x²) + eps)}, {@code x̂ = x r} and
 * {@code g} the output's gradient times the weight, in FP32. In FP32 autograd keeps nothing extra,
 * and the operations run as they are.
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
    if (x.scalar_type().value == ScalarType.Float.value
        || !GradMode.is_enabled()
        || !x.requires_grad()
        || weight.requires_grad()) {
      return compute(x);
    }
    Tensor y;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      y = compute(x);
    }
    return HookedBackward.attach(
        y, new Tensor[] {x}, new Tensor[] {x}, (s, gradOut, wanted) -> backward(s[0], gradOut));
  }

  /**
   * The norm's operations as they are: under autograd, autograd keeps what they need. Their FP32
   * intermediates (four times the input's size in bf16) are freed on return.
   */
  Tensor compute(Tensor x) {
    return Torch.scoped(
        () -> {
          ScalarType in = x.scalar_type();
          Tensor xf = x.to(ScalarType.Float); // x itself where it is FP32
          Tensor variance = xf.mul(xf).mean(new long[] {-1}, true, new ScalarTypeOptional());
          Tensor normed = xf.mul(torch.rsqrt(variance.add(new Scalar(eps))));
          return weight.mul(normed.to(in));
        });
  }

  private Tensor[] backward(Tensor x, Tensor gradOut) {
    try (PointerScope scope = new PointerScope()) {
      Tensor xf = x.to(ScalarType.Float);
      Tensor r =
          torch.rsqrt(
              xf.mul(xf)
                  .mean(new long[] {-1}, true, new ScalarTypeOptional())
                  .add(new Scalar(eps)));
      Tensor normed = xf.mul_(r);
      // the gradient of weight * normed.to(in) with respect to normed, as autograd forms it
      Tensor g = gradOut.mul(weight).to(x.scalar_type()).to(ScalarType.Float);
      Tensor dot = g.mul(normed).mean(new long[] {-1}, true, new ScalarTypeOptional());
      Tensor dx = g.sub_(normed.mul_(dot)).mul_(r);
      return new Tensor[] {Torch.keep(dx.to(x.scalar_type()))};
    }
  }

  @Override
  public void close() {
    weight.close();
  }
}
