package dev.troupe.pipeline.safetensors;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;

/**
 * A tensor to write: its type, shape and raw little-endian bytes.
 *
 * @param dtype the element type
 * @param shape the dimensions; {@code []} is a scalar
 * @param bytes the data, from its position to its limit; it must hold exactly numel * byteSize
 *     bytes
 */
public record TensorData(DType dtype, long[] shape, ByteBuffer bytes) {

  /**
   * Checks that {@code bytes.remaining()} equals the element count times the element size. Keeps a
   * read-only view of the remaining bytes, so later changes to the caller's position do not matter.
   */
  public TensorData {
    Objects.requireNonNull(dtype, "dtype");
    shape = Objects.requireNonNull(shape, "shape").clone();
    Objects.requireNonNull(bytes, "bytes");
    long numel = 1;
    for (long d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
      }
      numel = Math.multiplyExact(numel, d);
    }
    long want = Math.multiplyExact(numel, (long) dtype.byteSize());
    if (bytes.remaining() != want) {
      throw new IllegalArgumentException(
          "shape "
              + Arrays.toString(shape)
              + " of "
              + dtype
              + " needs "
              + want
              + " bytes but the buffer has "
              + bytes.remaining());
    }
    bytes = bytes.slice().asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
  }

  /** A tensor of {@link DType#F32} values, stored little-endian. */
  public static TensorData ofFloats(long[] shape, float[] values) {
    ByteBuffer b =
        ByteBuffer.allocate(Math.multiplyExact(values.length, 4)).order(ByteOrder.LITTLE_ENDIAN);
    b.asFloatBuffer().put(values);
    return new TensorData(DType.F32, shape, b);
  }

  /** The dimensions (a copy). */
  @Override
  public long[] shape() {
    return shape.clone();
  }

  /** A read-only little-endian view of the data, position 0, limit = byte length. */
  @Override
  public ByteBuffer bytes() {
    return bytes.duplicate().order(ByteOrder.LITTLE_ENDIAN);
  }

  /** Length of the data in bytes. */
  public long byteLength() {
    return bytes.remaining();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof TensorData t
        && dtype == t.dtype
        && Arrays.equals(shape, t.shape)
        && bytes.equals(t.bytes);
  }

  @Override
  public int hashCode() {
    return Objects.hash(dtype, Arrays.hashCode(shape), bytes);
  }

  @Override
  public String toString() {
    return "TensorData["
        + dtype
        + " "
        + Arrays.toString(shape)
        + ", "
        + bytes.remaining()
        + " bytes]";
  }
}
