package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Rotary position embedding in Hugging Face's rotate-half form, for positions {@code 0 ..
 * seqLen-1}. Angles are computed in float32 and cast to the compute dtype, as transformers does.
 */
final class Rotary {
  private final Tensor cos;
  private final Tensor sin;
  private final long half;

  private Rotary(Tensor cos, Tensor sin, long half) {
    this.cos = cos;
    this.sin = sin;
    this.half = half;
  }

  static Rotary of(ModelConfig c, long seqLen, ScalarType dtype) {
    int d = c.headDim();
    float[] invFreq = new float[d / 2];
    for (int i = 0; i < invFreq.length; i++) {
      // float32 like torch: base ** (arange(0, d, 2).float() / d), then the reciprocal.
      float exponent = (float) (2 * i) / d;
      invFreq[i] = 1.0f / (float) Math.pow(c.ropeTheta(), exponent);
    }
    float[] pos = new float[(int) seqLen];
    for (int t = 0; t < pos.length; t++) pos[t] = t;
    Tensor freqs =
        torch.outer(Torch.fromFloats(pos, seqLen), Torch.fromFloats(invFreq, invFreq.length));
    Tensor emb = torch.cat(new TensorVector(freqs, freqs), -1);
    Tensor cos = torch.cos(emb);
    Tensor sin = torch.sin(emb);
    if (dtype.value != ScalarType.Float.value) {
      cos = cos.to(dtype);
      sin = sin.to(dtype);
    }
    return new Rotary(cos, sin, d / 2);
  }

  /** Rotates x of shape [batch, heads, seq, head_dim]; the intermediates are freed on return. */
  Tensor apply(Tensor x) {
    return Torch.scoped(
        () -> {
          Tensor x1 = x.narrow(-1, 0, half);
          Tensor x2 = x.narrow(-1, half, half);
          Tensor rotated = torch.cat(new TensorVector(torch.neg(x2), x1), -1);
          return x.mul(cos).add_(rotated.mul_(sin));
        });
  }
}
