package dev.troupe.pipeline.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;

/** A parsed and validated safetensors header. */
record Header(
    long dataStart, SortedMap<String, TensorInfo> tensors, SortedMap<String, String> metadata) {
  /** Largest header accepted, as in the reference implementation. */
  static final long MAX_HEADER_BYTES = 100_000_000L;

  static final String METADATA_KEY = "__metadata__";

  /** Reads the header of {@code file} from {@code ch} and checks it against the file size. */
  static Header read(Path file, FileChannel ch) throws IOException {
    long size = ch.size();
    if (size < 8) {
      throw new SafetensorsException(
          file, "file is " + size + " bytes, too short for the 8-byte header length (truncated?)");
    }
    ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    readFully(ch, lenBuf, 0);
    long n = lenBuf.getLong(0);
    if (Long.compareUnsigned(n, MAX_HEADER_BYTES) > 0) {
      throw new SafetensorsException(
          file,
          "header length "
              + Long.toUnsignedString(n)
              + " exceeds the limit of "
              + MAX_HEADER_BYTES
              + " bytes (not a safetensors file?)");
    }
    if (8 + n > size) {
      throw new SafetensorsException(file, "header length " + n + " exceeds file size " + size);
    }
    ByteBuffer json = ByteBuffer.allocate((int) n);
    readFully(ch, json, 8);
    Header h = parse(file, Json.parseObject(file, "header", json.array()), 8 + n);
    h.checkDataLength(file, size - h.dataStart);
    return h;
  }

  private static void readFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
    while (buf.hasRemaining()) {
      int r = ch.read(buf, pos + buf.position());
      if (r < 0) {
        throw new java.io.EOFException("unexpected end of file");
      }
    }
  }

  /** Parses the header object; {@code dataStart} is where the data section begins in the file. */
  static Header parse(Path file, ObjectNode root, long dataStart) throws SafetensorsException {
    SortedMap<String, String> meta = new TreeMap<>();
    SortedMap<String, TensorInfo> tensors = new TreeMap<>();
    for (Map.Entry<String, JsonNode> e : root.properties()) {
      if (e.getKey().equals(METADATA_KEY)) {
        readMetadata(file, e.getValue(), meta);
      } else {
        tensors.put(e.getKey(), tensor(file, e.getKey(), e.getValue()));
      }
    }
    checkOverlaps(file, tensors);
    return new Header(
        dataStart,
        Collections.unmodifiableSortedMap(tensors),
        Collections.unmodifiableSortedMap(meta));
  }

  private static void readMetadata(Path file, JsonNode node, Map<String, String> into)
      throws SafetensorsException {
    if (!node.isObject()) {
      throw new SafetensorsException(
          file, METADATA_KEY + " is not a JSON object: " + Json.show(node));
    }
    for (Map.Entry<String, JsonNode> m : node.properties()) {
      if (!m.getValue().isTextual()) {
        throw new SafetensorsException(
            file,
            METADATA_KEY
                + " value for key '"
                + m.getKey()
                + "' is not a string: "
                + Json.show(m.getValue()));
      }
      into.put(m.getKey(), m.getValue().textValue());
    }
  }

  private static TensorInfo tensor(Path file, String name, JsonNode node)
      throws SafetensorsException {
    String where = "tensor " + name + ": ";
    if (!node.isObject()) {
      throw new SafetensorsException(
          file, where + "entry is not a JSON object: " + Json.show(node));
    }
    JsonNode dt = field(file, where, node, "dtype");
    if (!dt.isTextual()) {
      throw new SafetensorsException(file, where + "dtype is not a string: " + Json.show(dt));
    }
    DType dtype;
    try {
      dtype = DType.fromCode(dt.textValue());
    } catch (IllegalArgumentException e) {
      throw new SafetensorsException(file, where + e.getMessage(), e);
    }
    long[] shape = longs(file, where + "shape", field(file, where, node, "shape"), -1);
    long[] off = longs(file, where + "data_offsets", field(file, where, node, "data_offsets"), 2);
    if (off[0] > off[1]) {
      throw new SafetensorsException(
          file, where + "data_offsets " + Arrays.toString(off) + " begin after they end");
    }
    long numel = 1;
    long bytes;
    try {
      for (long d : shape) {
        numel = Math.multiplyExact(numel, d);
      }
      bytes = Math.multiplyExact(numel, (long) dtype.byteSize());
    } catch (ArithmeticException e) {
      throw new SafetensorsException(
          file, where + "shape " + Arrays.toString(shape) + " overflows", e);
    }
    if (off[1] - off[0] != bytes) {
      throw new SafetensorsException(
          file,
          where
              + "shape "
              + Arrays.toString(shape)
              + " of "
              + dtype
              + " needs "
              + bytes
              + " bytes but data_offsets "
              + Arrays.toString(off)
              + " span "
              + (off[1] - off[0]));
    }
    return new TensorInfo(name, dtype, shape, off[0], off[1]);
  }

  private static JsonNode field(Path file, String where, JsonNode node, String key)
      throws SafetensorsException {
    JsonNode v = node.get(key);
    if (v == null || v.isNull()) {
      throw new SafetensorsException(file, where + "missing field '" + key + "'");
    }
    return v;
  }

  /** A JSON array of non-negative integers; {@code count} is the required length, or -1 for any. */
  private static long[] longs(Path file, String what, JsonNode node, int count)
      throws SafetensorsException {
    if (!node.isArray() || (count >= 0 && node.size() != count)) {
      throw new SafetensorsException(
          file,
          what
              + " is not an array of "
              + (count >= 0 ? count + " " : "")
              + "integers: "
              + Json.show(node));
    }
    long[] out = new long[node.size()];
    for (int i = 0; i < out.length; i++) {
      JsonNode v = node.get(i);
      if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0) {
        throw new SafetensorsException(
            file,
            what + " " + Json.show(node) + ": element " + i + " is not a non-negative integer");
      }
      out[i] = v.longValue();
    }
    return out;
  }

  /** Rejects two tensors that share bytes; gaps and zero-length tensors are fine. */
  private static void checkOverlaps(Path file, Map<String, TensorInfo> tensors)
      throws SafetensorsException {
    List<TensorInfo> byBegin = new ArrayList<>();
    for (TensorInfo t : tensors.values()) {
      if (t.byteLength() > 0) {
        byBegin.add(t);
      }
    }
    byBegin.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
    TensorInfo last = null;
    for (TensorInfo t : byBegin) {
      if (last != null && t.begin() < last.end()) {
        throw new SafetensorsException(
            file,
            "tensors "
                + last.name()
                + " ["
                + last.begin()
                + ", "
                + last.end()
                + ") and "
                + t.name()
                + " ["
                + t.begin()
                + ", "
                + t.end()
                + ") overlap");
      }
      if (last == null || t.end() > last.end()) {
        last = t;
      }
    }
  }

  /** The data section must be exactly as long as the largest end offset, as in the reference. */
  void checkDataLength(Path file, long dataLength) throws SafetensorsException {
    TensorInfo last = null;
    for (TensorInfo t : tensors.values()) {
      if (last == null || t.end() > last.end()) {
        last = t;
      }
    }
    long need = last == null ? 0 : last.end();
    if (dataLength < need) {
      throw new SafetensorsException(
          file,
          "tensor "
              + last.name()
              + " ends at byte "
              + need
              + " of the data section, but the data section has only "
              + dataLength
              + " bytes (file truncated?)");
    }
    if (dataLength > need) {
      throw new SafetensorsException(
          file,
          "data section has "
              + dataLength
              + " bytes but the tensors end at "
              + need
              + "; "
              + (dataLength - need)
              + " trailing bytes belong to no tensor");
    }
  }
}
