package dev.troupe.pipeline.metrics;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * Reads the protobuf wire format field by field: call {@link #next()}, look at {@link #field()} and
 * {@link #wireType()}, then read the value with the matching method or {@link #skip()} it.
 * Malformed input (a value running past the end, an unknown wire type) fails with an {@link
 * IOException}.
 */
final class ProtoReader {
  private final byte[] buf;
  private final int end;
  private int pos;
  private int field;
  private int wireType;

  ProtoReader(byte[] buf) {
    this(buf, 0, buf.length);
  }

  private ProtoReader(byte[] buf, int from, int to) {
    this.buf = buf;
    this.pos = from;
    this.end = to;
  }

  /** Moves to the next field; false at the end of the message. */
  boolean next() throws IOException {
    if (pos >= end) {
      return false;
    }
    long key = varint();
    field = (int) (key >>> 3);
    wireType = (int) (key & 7);
    if (field < 1 || key >>> 3 > Integer.MAX_VALUE) {
      throw new IOException("protobuf: invalid field number " + (key >>> 3));
    }
    return true;
  }

  int field() {
    return field;
  }

  int wireType() {
    return wireType;
  }

  long int64() throws IOException {
    expect(ProtoWriter.VARINT);
    return varint();
  }

  double float64() throws IOException {
    expect(ProtoWriter.FIXED64);
    return Double.longBitsToDouble(fixed(8));
  }

  float float32() throws IOException {
    expect(ProtoWriter.FIXED32);
    return Float.intBitsToFloat((int) fixed(4));
  }

  String string() throws IOException {
    int[] span = span();
    try {
      return StandardCharsets.UTF_8
          .newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(buf, span[0], span[1] - span[0]))
          .toString();
    } catch (CharacterCodingException e) {
      throw new IOException("protobuf: field " + field + " is not valid UTF-8", e);
    }
  }

  /** A reader over the embedded message in the current field. */
  ProtoReader message() throws IOException {
    int[] span = span();
    return new ProtoReader(buf, span[0], span[1]);
  }

  /** Skips the current field's value, whatever its wire type. */
  void skip() throws IOException {
    switch (wireType) {
      case ProtoWriter.VARINT -> varint();
      case ProtoWriter.FIXED64 -> fixed(8);
      case ProtoWriter.LENGTH_DELIMITED -> span();
      case ProtoWriter.FIXED32 -> fixed(4);
      default ->
          throw new IOException(
              "protobuf: unsupported wire type " + wireType + " for field " + field);
    }
  }

  private int[] span() throws IOException {
    expect(ProtoWriter.LENGTH_DELIMITED);
    long len = varint();
    if (len < 0 || len > end - pos) {
      throw new IOException("protobuf: field " + field + " length " + len + " runs past the end");
    }
    int from = pos;
    pos += (int) len;
    return new int[] {from, pos};
  }

  private void expect(int type) throws IOException {
    if (wireType != type) {
      throw new IOException(
          "protobuf: field " + field + " has wire type " + wireType + ", expected " + type);
    }
  }

  private long fixed(int n) throws IOException {
    if (end - pos < n) {
      throw new IOException("protobuf: fixed-size value runs past the end");
    }
    long v = 0;
    for (int i = 0; i < n; i++) {
      v |= (buf[pos++] & 0xFFL) << (8 * i);
    }
    return v;
  }

  private long varint() throws IOException {
    long v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) {
        throw new IOException("protobuf: varint runs past the end");
      }
      byte b = buf[pos++];
      v |= (long) (b & 0x7F) << shift;
      if (b >= 0) {
        return v;
      }
    }
    throw new IOException("protobuf: varint longer than ten bytes");
  }
}
