package dev.troupe.pipeline.engine;

import java.util.Locale;
import org.bytedeco.pytorch.global.torch.ScalarType;

/** The floating-point type a model computes in. */
public enum ComputeDtype {
  FP32(ScalarType.Float),
  BF16(ScalarType.BFloat16),
  FP16(ScalarType.Half);

  private final ScalarType scalarType;

  ComputeDtype(ScalarType scalarType) {
    this.scalarType = scalarType;
  }

  /** The libtorch scalar type. */
  public ScalarType scalarType() {
    return scalarType;
  }

  /** The name users write: {@code fp32}, {@code bf16}, {@code fp16}. */
  public String label() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Parses {@code fp32|bf16|fp16} (also {@code float32}, {@code bfloat16}, {@code float16}). */
  public static ComputeDtype parse(String text) {
    return switch (text.toLowerCase(Locale.ROOT)) {
      case "fp32", "float32", "f32" -> FP32;
      case "bf16", "bfloat16" -> BF16;
      case "fp16", "float16", "half", "f16" -> FP16;
      default ->
          throw new IllegalArgumentException(
              "unknown dtype '" + text + "' (expected fp32, bf16 or fp16)");
    };
  }
}
