package dev.troupe.pipeline.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.Natives;
import dev.troupe.pipeline.engine.Torch;
import java.util.Random;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Quantize and dequantize against the formats' definitions, computed here in plain Java value by
 * value (not with the tensor ops the implementation uses), and the error sizes they imply.
 */
class QuantizedTensorTest {
  @BeforeAll
  static void load() {
    Natives.ensureLoaded();
  }

  private static float[] gaussian(int n, long seed) {
    Random r = new Random(seed);
    float[] v = new float[n];
    for (int i = 0; i < n; i++) v[i] = (float) r.nextGaussian();
    return v;
  }

  /** The definition of each format, one value at a time. */
  private static float[] reference(float[] w, int rows, int cols, QuantFormat f) {
    float[] out = new float[w.length];
    for (int r = 0; r < rows; r++) {
      if (f == QuantFormat.INT8) {
        float amax = 0;
        for (int c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(w[r * cols + c]));
        // rounded up to a bf16 value: the low 16 of the FP32 bits carried up and cleared
        float s = Float.intBitsToFloat((Float.floatToIntBits(amax / 127f) + 0xFFFF) & 0xFFFF0000);
        for (int c = 0; c < cols; c++) {
          float q = Math.max(-127, Math.min(127, (float) Math.rint(w[r * cols + c] / s)));
          out[r * cols + c] = q * s;
        }
        continue;
      }
      for (int g = 0; g < cols; g += QuantizedTensor.GROUP) {
        int end = Math.min(cols, g + QuantizedTensor.GROUP);
        float amax = 0;
        for (int c = g; c < end; c++) amax = Math.max(amax, Math.abs(w[r * cols + c]));
        for (int c = g; c < end; c++) {
          float x = w[r * cols + c] / amax;
          float v;
          if (f == QuantFormat.INT4) {
            v = (float) Math.rint(x * 7f) / 7f;
          } else {
            v = QuantizedTensor.NF4_CODES[0];
            for (float code : QuantizedTensor.NF4_CODES) {
              if (Math.abs(x - code) < Math.abs(x - v)) v = code;
            }
          }
          out[r * cols + c] = v * amax;
        }
      }
    }
    return out;
  }

  private static double relativeError(float[] got, float[] want) {
    double num = 0;
    double den = 0;
    for (int i = 0; i < got.length; i++) {
      num += (got[i] - want[i]) * (double) (got[i] - want[i]);
      den += want[i] * (double) want[i];
    }
    return Math.sqrt(num / den);
  }

  @ParameterizedTest
  @EnumSource(
      value = QuantFormat.class,
      names = {"INT8", "INT4", "NF4"})
  void dequantizedValuesAreTheDefinitions(QuantFormat f) {
    check(f, 7, 176); // not a multiple of the group: the last group is partial
    check(f, 1100, 256); // more rows than one quantization block holds
  }

  private static void check(QuantFormat f, int rows, int cols) {
    float[] w = gaussian(rows * cols, 3);
    try (PointerScope scope = new PointerScope();
        QuantizedTensor q = QuantizedTensor.quantize(Torch.fromFloats(w, rows, cols), f)) {
      Tensor d = q.dequantize(ScalarType.Float);
      assertArrayEquals(new long[] {rows, cols}, Torch.shape(d));
      float[] got = Torch.toFloats(d);
      float[] want = reference(w, rows, cols, f);
      for (int i = 0; i < got.length; i++) {
        // values exactly on a rounding midpoint may go either way; none occur with this seed.
        // INT8 is the FP32 product code · scale to the bit (formed through a per-channel qint8
        // tensor in FP64 and rounded once); the 4-bit formats' table values are within 1e-6
        float tolerance = f == QuantFormat.INT8 ? 0f : 1e-6f * Math.max(1f, Math.abs(want[i]));
        assertEquals(want[i], got[i], tolerance, f + " value " + i);
      }
    }
  }

  @Test
  void errorSizesAndBytesOnAGaussianMatrix() {
    int n = 256;
    float[] w = gaussian(n * n, 11);
    double[] err = new double[QuantFormat.values().length];
    long[] bytes = new long[err.length];
    for (QuantFormat f : new QuantFormat[] {QuantFormat.INT8, QuantFormat.INT4, QuantFormat.NF4}) {
      try (PointerScope scope = new PointerScope();
          QuantizedTensor q = QuantizedTensor.quantize(Torch.fromFloats(w, n, n), f)) {
        err[f.ordinal()] = relativeError(Torch.toFloats(q.dequantize(ScalarType.Float)), w);
        bytes[f.ordinal()] = q.bytes();
      }
    }
    double int8 = err[QuantFormat.INT8.ordinal()];
    double int4 = err[QuantFormat.INT4.ordinal()];
    double nf4 = err[QuantFormat.NF4.ordinal()];
    System.out.printf(
        "relative error on N(0,1) 256x256: int8 %.5f, int4 %.5f, nf4 %.5f%n", int8, int4, nf4);
    assertTrue(int8 > 0.002 && int8 < 0.012, "int8 error " + int8);
    assertTrue(nf4 > 0.05 && nf4 < 0.12, "nf4 error " + nf4);
    // NF4's codes suit normally distributed weights better than evenly spaced INT4 levels
    assertTrue(nf4 < int4 && int4 < 0.2, "int4 " + int4 + " vs nf4 " + nf4);
    assertEquals(n * n + 4L * n + 2L * n, bytes[QuantFormat.INT8.ordinal()]); // + bf16 scales
    assertEquals(n * n / 2 + 4L * n * n / 64, bytes[QuantFormat.NF4.ordinal()]);
  }

  /** bf16 and fp16 output: the FP32 values rounded once, for every format. */
  @ParameterizedTest
  @EnumSource(
      value = QuantFormat.class,
      names = {"INT8", "INT4", "NF4"})
  void reducedPrecisionOutputIsTheFp32ValuesRounded(QuantFormat f) {
    float[] w = gaussian(64 * 96, 5);
    try (PointerScope scope = new PointerScope();
        QuantizedTensor q = QuantizedTensor.quantize(Torch.fromFloats(w, 64, 96), f)) {
      Tensor fp32 = q.dequantize(ScalarType.Float);
      for (ScalarType t : new ScalarType[] {ScalarType.BFloat16, ScalarType.Half}) {
        Tensor reduced = q.dequantize(t);
        assertEquals(t.value, reduced.scalar_type().value);
        assertTrue(torch.equal(fp32.to(t), reduced), f + " as " + t);
      }
    }
  }

  @Test
  void rejectsNoneAndNonMatrices() {
    try (PointerScope scope = new PointerScope()) {
      Tensor v = Torch.fromFloats(new float[] {1, 2}, 2);
      assertThrows(
          IllegalArgumentException.class, () -> QuantizedTensor.quantize(v, QuantFormat.INT8));
      Tensor m = Torch.fromFloats(new float[] {1, 2}, 1, 2);
      assertThrows(
          IllegalArgumentException.class, () -> QuantizedTensor.quantize(m, QuantFormat.NONE));
    }
  }

  @Test
  void formatsPromoteAndDemoteOneLevel() {
    assertEquals(QuantFormat.INT8, QuantFormat.NF4.promoted());
    assertEquals(QuantFormat.INT8, QuantFormat.INT4.promoted());
    assertEquals(QuantFormat.NONE, QuantFormat.INT8.promoted());
    assertEquals(QuantFormat.NONE, QuantFormat.NONE.promoted());
    assertEquals(QuantFormat.INT8, QuantFormat.NONE.demoted(QuantFormat.NF4));
    assertEquals(QuantFormat.NF4, QuantFormat.INT8.demoted(QuantFormat.NF4));
    assertEquals(QuantFormat.INT4, QuantFormat.INT8.demoted(QuantFormat.INT4));
    assertEquals(QuantFormat.NF4, QuantFormat.NF4.demoted(QuantFormat.NF4));
    assertThrows(IllegalArgumentException.class, () -> QuantFormat.NONE.demoted(QuantFormat.INT8));
  }
}
