package dev.troupe.pipeline.quant;

import java.util.Locale;

/** How a frozen weight matrix is stored. */
public enum QuantFormat {
  /** Not quantized: held in the compute dtype. */
  NONE(16),
  /** One signed byte per value, one FP32 absmax scale per output channel (row). */
  INT8(8),
  /**
   * Four bits per value (two per byte), symmetric integers -8..7 times one FP32 absmax/7 scale per
   * group of {@link QuantizedTensor#GROUP} consecutive inputs of a row.
   */
  INT4(4),
  /**
   * Four bits per value: the index of the nearest NormalFloat4 code (QLoRA) times one FP32 absmax
   * scale per group of {@link QuantizedTensor#GROUP} consecutive inputs of a row.
   */
  NF4(4);

  private final int bits;

  QuantFormat(int bits) {
    this.bits = bits;
  }

  /** Bits per stored value (16 for {@link #NONE}, meaning the compute dtype). */
  public int bits() {
    return bits;
  }

  /** The next more precise format: 4-bit to INT8, INT8 to NONE; NONE stays. */
  public QuantFormat promoted() {
    return switch (this) {
      case NF4, INT4 -> INT8;
      case INT8, NONE -> NONE;
    };
  }

  /** The next less precise format, {@code fourBit} below INT8; the 4-bit formats stay. */
  public QuantFormat demoted(QuantFormat fourBit) {
    if (fourBit != INT4 && fourBit != NF4) {
      throw new IllegalArgumentException("not a 4-bit format: " + fourBit);
    }
    return switch (this) {
      case NONE -> INT8;
      case INT8 -> fourBit;
      case INT4, NF4 -> this;
    };
  }

  /** The lower-case name used in configuration and metrics. */
  public String label() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Parses {@code none}, {@code int8}, {@code int4} or {@code nf4} (any case). */
  public static QuantFormat parse(String text) {
    for (QuantFormat f : values()) {
      if (f.label().equalsIgnoreCase(text)) return f;
    }
    throw new IllegalArgumentException(
        "unknown quantization format '" + text + "' (expected none, int8, int4 or nf4)");
  }
}
