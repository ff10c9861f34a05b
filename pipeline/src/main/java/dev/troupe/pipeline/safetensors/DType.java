package dev.troupe.pipeline.safetensors;

import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * The element types this runtime reads and writes in safetensors files, with their header codes
 * ({@code "F32"}, {@code "BF16"}, ...) and sizes in bytes. Other codes of the format (for example
 * {@code F8_E4M3}, {@code F64}, {@code BOOL}) are rejected when a file is opened.
 */
public enum DType {
  /** IEEE 754 single precision. */
  F32(4),
  /** IEEE 754 half precision. */
  F16(2),
  /** bfloat16: the upper half of an F32. */
  BF16(2),
  /** Signed 8-bit integer. */
  I8(1),
  /** Unsigned 8-bit integer. */
  U8(1),
  /** Signed 32-bit integer. */
  I32(4),
  /** Signed 64-bit integer. */
  I64(8);

  private final int byteSize;

  DType(int byteSize) {
    this.byteSize = byteSize;
  }

  /** Size of one element in bytes. */
  public int byteSize() {
    return byteSize;
  }

  /** The code used in a safetensors header, e.g. {@code "F32"}. */
  public String code() {
    return name();
  }

  /**
   * The dtype for a header code (case-sensitive, as the format defines it).
   *
   * @throws IllegalArgumentException naming the code if it is unknown or unsupported
   */
  public static DType fromCode(String code) {
    if (code != null) {
      for (DType t : values()) {
        if (t.code().equals(code)) {
          return t;
        }
      }
    }
    throw new IllegalArgumentException(
        "unsupported dtype '"
            + code
            + "' (supported: "
            + Arrays.stream(values()).map(DType::code).collect(Collectors.joining(", "))
            + ")");
  }
}
