package dev.troupe.tests;

import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.SafetensorsFile;
import dev.troupe.pipeline.safetensors.TensorInfo;
import java.nio.FloatBuffer;
import java.nio.file.Path;
import java.util.Map;

/** A float32 logits tensor read from a safetensors file, and ways to compare two of them. */
record Logits(long[] shape, float[] values, Map<String, String> metadata) {
  static Logits read(Path file) throws Exception {
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      TensorInfo info = f.info("logits");
      if (info.dtype() != DType.F32)
        throw new AssertionError(file + ": logits are " + info.dtype());
      FloatBuffer fb = f.data("logits").asFloatBuffer();
      float[] v = new float[fb.remaining()];
      fb.get(v);
      return new Logits(info.shape(), v, f.metadata());
    }
  }

  int vocab() {
    return (int) shape[shape.length - 1];
  }

  float maxAbs() {
    float m = 0;
    for (float x : values) m = Math.max(m, Math.abs(x));
    return m;
  }

  float maxAbsDiff(Logits other) {
    if (!java.util.Arrays.equals(shape, other.shape)) {
      throw new AssertionError(
          "shapes differ: "
              + java.util.Arrays.toString(shape)
              + " vs "
              + java.util.Arrays.toString(other.shape));
    }
    float m = 0;
    for (int i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i] - other.values[i]));
    return m;
  }

  /** Index of the largest logit at each position. */
  int[] argmax() {
    int v = vocab();
    int[] out = new int[values.length / v];
    for (int p = 0; p < out.length; p++) {
      int best = 0;
      for (int j = 1; j < v; j++) if (values[p * v + j] > values[p * v + best]) best = j;
      out[p] = best;
    }
    return out;
  }
}
