package dev.troupe.pipeline.model;

import java.util.List;

/** Small architectures for tests, one knob at a time. */
final class TinyConfigs {
  private TinyConfigs() {}

  /** hidden 64, 2 layers, 4 query heads of 16, vocab 256. */
  static ModelConfig of(
      String type, int kvHeads, boolean tied, boolean qkvBias, int slidingWindow) {
    boolean qwen = type.equals("qwen2");
    return new ModelConfig(
        type,
        300,
        64,
        96,
        2,
        4,
        kvHeads,
        16,
        1e-6,
        10000.0,
        tied,
        qwen || qkvBias,
        !qwen && qkvBias,
        false,
        slidingWindow,
        128,
        List.of(2L),
        1);
  }

  static ModelConfig llama() {
    return of("llama", 2, false, false, 0);
  }
}
