package dev.troupe.pipeline.metrics;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Just enough of the protobuf wire format to encode TensorBoard events: varints, 64- and 32-bit
 * fixed values and length-delimited fields. Fields are written in the order the methods are called.
 */
final class ProtoWriter {
  static final int VARINT = 0;
  static final int FIXED64 = 1;
  static final int LENGTH_DELIMITED = 2;
  static final int FIXED32 = 5;

  private final ByteArrayOutputStream out = new ByteArrayOutputStream();

  /** An int64 field (negative values take ten bytes, as protobuf's int64 does). */
  ProtoWriter int64(int field, long value) {
    tag(field, VARINT);
    varint(value);
    return this;
  }

  /** A double field, little-endian IEEE 754. */
  ProtoWriter float64(int field, double value) {
    tag(field, FIXED64);
    long bits = Double.doubleToRawLongBits(value);
    for (int i = 0; i < 8; i++) {
      out.write((int) (bits >>> (8 * i)));
    }
    return this;
  }

  /** A float field, little-endian IEEE 754. */
  ProtoWriter float32(int field, float value) {
    tag(field, FIXED32);
    int bits = Float.floatToRawIntBits(value);
    for (int i = 0; i < 4; i++) {
      out.write(bits >>> (8 * i));
    }
    return this;
  }

  /** A string field, UTF-8. */
  ProtoWriter string(int field, String value) {
    return bytes(field, value.getBytes(StandardCharsets.UTF_8));
  }

  /** An embedded message field. */
  ProtoWriter message(int field, ProtoWriter message) {
    return bytes(field, message.toByteArray());
  }

  /** A bytes field. */
  ProtoWriter bytes(int field, byte[] value) {
    tag(field, LENGTH_DELIMITED);
    varint(value.length);
    out.writeBytes(value);
    return this;
  }

  byte[] toByteArray() {
    return out.toByteArray();
  }

  private void tag(int field, int wireType) {
    if (field < 1 || field > (1 << 29) - 1) {
      throw new IllegalArgumentException("field number out of range: " + field);
    }
    varint(((long) field << 3) | wireType);
  }

  private void varint(long value) {
    while ((value & ~0x7FL) != 0) {
      out.write((int) ((value & 0x7F) | 0x80));
      value >>>= 7;
    }
    out.write((int) value);
  }
}
