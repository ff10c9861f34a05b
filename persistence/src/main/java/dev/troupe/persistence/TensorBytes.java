package dev.troupe.persistence;

import java.util.Arrays;
import java.util.Map;

/**
 * A tensor on the wire: its raw little-endian bytes with the dtype (safetensors names) and shape.
 * Activations, gradients and LoRA state travel between device actors as this; it holds no native
 * memory, so it can be serialized, queued and dropped like any other message field.
 *
 * @param dtype one of {@code F64 F32 F16 BF16 I64 I32 I8 U8 BOOL}
 * @param shape the dimensions, each at least 0 ({@code []} for a scalar)
 * @param data exactly {@code product(shape) * elementSize(dtype)} bytes
 */
public record TensorBytes(String dtype, long[] shape, byte[] data) {
  private static final Map<String, Integer> SIZES =
      Map.of(
          "F64", 8, "F32", 4, "F16", 2, "BF16", 2, "I64", 8, "I32", 4, "I8", 1, "U8", 1, "BOOL", 1);

  public TensorBytes {
    if (dtype == null || !SIZES.containsKey(dtype)) {
      throw new IllegalArgumentException(
          "tensor dtype '"
              + dtype
              + "' is not one of "
              + SIZES.keySet().stream().sorted().toList());
    }
    if (shape == null) throw new IllegalArgumentException("tensor shape is missing");
    if (data == null) throw new IllegalArgumentException("tensor data is missing");
    boolean empty = false;
    for (int i = 0; i < shape.length; i++) {
      if (shape[i] < 0) {
        throw new IllegalArgumentException(
            "tensor shape " + Arrays.toString(shape) + ": dimension " + i + " is negative");
      }
      empty |= shape[i] == 0;
    }
    long expected;
    try {
      long elements = 1;
      // a zero dimension anywhere makes the tensor empty, whatever the others multiply to
      for (long dim : shape) elements = empty ? 0 : Math.multiplyExact(elements, dim);
      expected = Math.multiplyExact(elements, SIZES.get(dtype));
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException(
          "tensor " + dtype + Arrays.toString(shape) + " has more bytes than a long can count", e);
    }
    if (expected != data.length) {
      throw new IllegalArgumentException(
          "tensor "
              + dtype
              + Arrays.toString(shape)
              + " needs "
              + expected
              + " bytes, got "
              + data.length);
    }
  }

  /** The bytes of a tensor read from or for a safetensors file (copied). */
  public static TensorBytes of(dev.troupe.pipeline.safetensors.TensorData t) {
    java.nio.ByteBuffer src = t.bytes().duplicate();
    byte[] out = new byte[src.remaining()];
    src.get(out);
    return new TensorBytes(t.dtype().name(), t.shape(), out);
  }

  /** These bytes as safetensors tensor data (not copied). */
  public dev.troupe.pipeline.safetensors.TensorData toTensorData() {
    return new dev.troupe.pipeline.safetensors.TensorData(
        dev.troupe.pipeline.safetensors.DType.valueOf(dtype),
        shape,
        java.nio.ByteBuffer.wrap(data).order(java.nio.ByteOrder.LITTLE_ENDIAN));
  }

  /** Bytes per element of {@code dtype}. */
  public static int elementSize(String dtype) {
    Integer size = SIZES.get(dtype);
    if (size == null) throw new IllegalArgumentException("unknown tensor dtype '" + dtype + "'");
    return size;
  }

  /** Number of elements. */
  public long elements() {
    return data.length / SIZES.get(dtype);
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof TensorBytes t
        && dtype.equals(t.dtype)
        && Arrays.equals(shape, t.shape)
        && Arrays.equals(data, t.data);
  }

  @Override
  public int hashCode() {
    return 31 * (31 * dtype.hashCode() + Arrays.hashCode(shape)) + Arrays.hashCode(data);
  }

  @Override
  public String toString() {
    return "TensorBytes[" + dtype + Arrays.toString(shape) + ", " + data.length + " bytes]";
  }
}
