package dev.troupe.pipeline.model;

import java.util.List;
import java.util.Locale;

/** Named architectures for randomly initialised models: tests, demos and benchmarks. */
public enum ModelPreset {
  /** A few small layers with grouped-query attention: fast enough for every test. */
  TINY(
      new ModelConfig(
          "llama",
          512,
          64,
          176,
          3,
          4,
          2,
          16,
          1e-5,
          10000.0,
          false,
          false,
          false,
          false,
          0,
          256,
          List.of(2L),
          1)),
  /** 4 layers, hidden 512: about 21M parameters (8.4M of them in embedding and head). */
  BENCH_S(
      new ModelConfig(
          "llama",
          8192,
          512,
          1408,
          4,
          8,
          8,
          64,
          1e-5,
          10000.0,
          false,
          false,
          false,
          false,
          0,
          1024,
          List.of(2L),
          1)),
  /** 8 layers, hidden 1024: about 168M parameters (66M of them in embedding and head). */
  BENCH_M(
      new ModelConfig(
          "llama",
          32000,
          1024,
          2816,
          8,
          16,
          16,
          64,
          1e-5,
          10000.0,
          false,
          false,
          false,
          false,
          0,
          2048,
          List.of(2L),
          1));

  private final ModelConfig config;

  ModelPreset(ModelConfig config) {
    this.config = config;
  }

  public ModelConfig config() {
    return config;
  }

  /** The name users type: {@code tiny}, {@code bench-s}, {@code bench-m}. */
  public String label() {
    return name().toLowerCase(Locale.ROOT).replace('_', '-');
  }

  public static ModelPreset parse(String name) {
    for (ModelPreset p : values()) if (p.label().equals(name)) return p;
    throw new IllegalArgumentException(
        "unknown preset '" + name + "' (known: tiny, bench-s, bench-m)");
  }
}
