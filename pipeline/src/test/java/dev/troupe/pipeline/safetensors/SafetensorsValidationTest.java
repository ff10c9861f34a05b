package dev.troupe.pipeline.safetensors;

import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.assertRejected;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.bytes;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.concat;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.entry;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.file;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.seq;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.u64;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every malformed input is rejected with a SafetensorsException naming the file and the problem.
 */
class SafetensorsValidationTest {
  @TempDir Path dir;

  private static final String F32_2x3 = entry("w", "F32", "[2,3]", "[0,24]");

  // 1. truncated before the length prefix ends
  @Test
  void fileShorterThanEightBytes() throws IOException {
    assertRejected(bytes(dir, "empty.safetensors", new byte[0]), "0 bytes", "too short");
    assertRejected(
        bytes(dir, "five.safetensors", new byte[] {8, 0, 0, 0, 0}), "5 bytes", "too short");
  }

  // 2. header length beyond the file, or absurd
  @Test
  void headerLengthLargerThanFile() throws IOException {
    Path f = bytes(dir, "x.safetensors", concat(u64(99999), new byte[112]));
    SafetensorsException e = assertRejected(f);
    assertEquals(f + ": header length 99999 exceeds file size 120", e.getMessage());
  }

  @Test
  void headerLengthAbsurd() throws IOException {
    assertRejected(
        bytes(dir, "a.safetensors", concat(u64(-1L), new byte[8])),
        "header length 18446744073709551615",
        "limit of 100000000");
    assertRejected(
        bytes(dir, "b.safetensors", concat(u64(200_000_000L), new byte[8])),
        "header length 200000000",
        "limit");
  }

  // 3. not JSON, not an object, not UTF-8
  @Test
  void headerNotJson() throws IOException {
    assertRejected(file(dir, "{\"w\": {\"dtype\": ", new byte[0]), "header is not valid JSON");
    assertRejected(file(dir, "{} {}", new byte[0]), "header is not valid JSON");
    assertRejected(file(dir, "", new byte[0]), "header is empty");
    assertRejected(file(dir, "        ", new byte[0]), "header is empty");
  }

  @Test
  void headerNotAnObject() throws IOException {
    assertRejected(file(dir, "[1, 2]", new byte[0]), "not a JSON object", "array");
    assertRejected(file(dir, "\"w\"", new byte[0]), "not a JSON object");
    assertRejected(file(dir, "42", new byte[0]), "not a JSON object");
    assertRejected(file(dir, "{\"w\": [1,2]}", new byte[0]), "tensor w", "not a JSON object");
  }

  @Test
  void headerNotUtf8() throws IOException {
    byte[] h =
        concat(
            "{\"".getBytes(StandardCharsets.US_ASCII),
            new byte[] {(byte) 0xff, (byte) 0xfe},
            "\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"
                .getBytes(StandardCharsets.US_ASCII));
    assertRejected(file(dir, "u.safetensors", h, new byte[0]), "not valid UTF-8");
  }

  @Test
  void paddedHeaderIsAccepted() throws IOException {
    try (SafetensorsFile sf =
        SafetensorsFile.open(file(dir, "{" + F32_2x3 + "}   \n  ", seq(24)))) {
      assertArrayEquals(new long[] {2, 3}, sf.info("w").shape());
    }
  }

  // 4. unknown dtype
  @Test
  void unknownDtype() throws IOException {
    assertRejected(
        file(dir, "{" + entry("w", "F8_E4M3", "[4]", "[0,4]") + "}", seq(4)),
        "tensor w",
        "F8_E4M3",
        "unsupported dtype");
    assertRejected(
        file(dir, "{" + entry("w", "Q4", "[4]", "[0,4]") + "}", seq(4)), "tensor w", "Q4");
    assertRejected(
        file(dir, "{\"w\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,4]}}", seq(4)),
        "tensor w",
        "dtype is not a string");
  }

  // 5. shape against byte length; bad dims
  @Test
  void shapeAndByteLengthDisagree() throws IOException {
    assertRejected(
        file(dir, "{" + entry("w", "F32", "[2,3]", "[0,20]") + "}", seq(20)),
        "tensor w",
        "[2, 3]",
        "needs 24 bytes",
        "span 20");
    assertRejected(
        file(dir, "{" + entry("w", "BF16", "[]", "[0,4]") + "}", seq(4)), "needs 2 bytes");
  }

  @Test
  void badDimensions() throws IOException {
    assertRejected(
        file(dir, "{" + entry("w", "F32", "[-1,3]", "[0,12]") + "}", seq(12)),
        "tensor w",
        "shape",
        "not a non-negative integer");
    assertRejected(
        file(dir, "{" + entry("w", "F32", "[2.5]", "[0,10]") + "}", seq(10)),
        "tensor w",
        "shape",
        "not a non-negative integer");
    assertRejected(
        file(dir, "{" + entry("w", "F32", "[2.0]", "[0,8]") + "}", seq(8)),
        "not a non-negative integer");
    assertRejected(
        file(dir, "{" + entry("w", "F32", "[\"2\"]", "[0,8]") + "}", seq(8)),
        "not a non-negative integer");
    assertRejected(
        file(dir, "{" + entry("w", "F32", "[99999999999999999999]", "[0,8]") + "}", seq(8)),
        "not a non-negative integer");
    assertRejected(
        file(dir, "{" + entry("w", "F32", "2", "[0,8]") + "}", seq(8)), "shape is not an array");
    assertRejected(
        file(dir, "{" + entry("w", "F32", "[4611686018427387904,4]", "[0,8]") + "}", seq(8)),
        "tensor w",
        "overflows");
  }

  // 6. offsets
  @Test
  void offsetsBeyondDataSection() throws IOException {
    assertRejected(
        file(dir, "{" + entry("w", "F32", "[12]", "[0,48]") + "}", seq(24)),
        "tensor w ends at byte 48",
        "only 24 bytes");
  }

  @Test
  void offsetsReversedNegativeOrMalformed() throws IOException {
    assertRejected(
        file(dir, "{" + entry("w", "U8", "[0]", "[24,0]") + "}", seq(24)),
        "tensor w",
        "[24, 0]",
        "begin after they end");
    assertRejected(
        file(dir, "{" + entry("w", "U8", "[24]", "[-4,20]") + "}", seq(24)),
        "tensor w",
        "data_offsets",
        "not a non-negative integer");
    assertRejected(
        file(dir, "{" + entry("w", "U8", "[24]", "[0,24,48]") + "}", seq(24)),
        "tensor w",
        "data_offsets is not an array of 2 integers");
    assertRejected(
        file(dir, "{" + entry("w", "U8", "[24]", "[0.0,24]") + "}", seq(24)),
        "not a non-negative integer");
  }

  // 7. overlap is an error, gaps are not
  @Test
  void overlappingTensors() throws IOException {
    String h =
        "{" + entry("a", "F32", "[4]", "[0,16]") + "," + entry("b", "F32", "[4]", "[8,24]") + "}";
    assertRejected(file(dir, h, seq(24)), "tensors a [0, 16) and b [8, 24) overlap");
    String same =
        "{" + entry("a", "F32", "[4]", "[0,16]") + "," + entry("b", "I32", "[4]", "[0,16]") + "}";
    assertRejected(file(dir, same, seq(16)), "overlap");
    String inside =
        "{" + entry("a", "U8", "[24]", "[0,24]") + "," + entry("z", "U8", "[4]", "[10,14]") + "}";
    assertRejected(file(dir, inside, seq(24)), "tensors a [0, 24) and z [10, 14) overlap");
  }

  @Test
  void gapsAndZeroLengthTensorsAreAllowed() throws IOException {
    String h =
        "{"
            + entry("a", "U8", "[8]", "[0,8]")
            + ","
            + entry("b", "U8", "[8]", "[16,24]")
            + ","
            + entry("e", "F32", "[0,5]", "[4,4]")
            + "}";
    try (SafetensorsFile sf = SafetensorsFile.open(file(dir, h, seq(24)))) {
      assertArrayEquals(Arrays.copyOfRange(seq(24), 16, 24), toArray(sf.data("b")));
      assertEquals(0, sf.data("e").remaining());
    }
  }

  private static byte[] toArray(java.nio.ByteBuffer b) {
    byte[] out = new byte[b.remaining()];
    b.get(out);
    return out;
  }

  // 8. truncated data section, and (like the reference) no trailing bytes
  @Test
  void truncatedDataSection() throws IOException {
    Path f = dir.resolve("cut.safetensors");
    SafetensorsWriter.write(
        f,
        new TreeMap<>(
            Map.of(
                "a", TensorData.ofFloats(new long[] {4}, new float[] {1, 2, 3, 4}),
                "b", TensorData.ofFloats(new long[] {4}, new float[] {5, 6, 7, 8}))),
        null);
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
      raf.setLength(raf.length() - 3);
    }
    assertRejected(f, "tensor b ends at byte 32", "only 29 bytes", "truncated");
  }

  @Test
  void trailingBytesAfterLastTensor() throws IOException {
    assertRejected(
        file(dir, "{" + F32_2x3 + "}", seq(30)),
        "data section has 30 bytes but the tensors end at 24",
        "6 trailing bytes");
    assertRejected(file(dir, "{}", seq(1)), "data section has 1 bytes but the tensors end at 0");
  }

  // 10. missing fields, duplicate keys
  @Test
  void missingFields() throws IOException {
    assertRejected(
        file(dir, "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", seq(4)),
        "tensor w",
        "missing field 'dtype'");
    assertRejected(
        file(dir, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", seq(4)),
        "tensor w",
        "missing field 'shape'");
    assertRejected(
        file(dir, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", seq(4)),
        "tensor w",
        "missing field 'data_offsets'");
    assertRejected(
        file(dir, "{\"w\":{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,4]}}", seq(4)),
        "missing field 'dtype'");
  }

  @Test
  void duplicateKeys() throws IOException {
    String w = entry("w", "F32", "[1]", "[0,4]");
    assertRejected(file(dir, "{" + w + "," + w + "}", seq(4)), "not valid JSON", "Duplicate", "w");
    assertRejected(
        file(dir, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", new byte[0]), "Duplicate", "k");
    assertRejected(
        file(
            dir,
            "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
            seq(4)),
        "Duplicate",
        "dtype");
  }

  // 11. metadata must map strings to strings
  @Test
  void metadataValuesMustBeStrings() throws IOException {
    assertRejected(
        file(dir, "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}", new byte[0]),
        "__metadata__",
        "key 'step'",
        "not a string");
    assertRejected(
        file(dir, "{\"__metadata__\":{\"x\":{\"y\":\"z\"}}}", new byte[0]),
        "key 'x'",
        "not a string");
    assertRejected(
        file(dir, "{\"__metadata__\":{\"x\":null}}", new byte[0]), "key 'x'", "not a string");
    assertRejected(
        file(dir, "{\"__metadata__\":[\"pt\"]}", new byte[0]), "__metadata__ is not a JSON object");
  }

  @Test
  void missingFileIsReportedByName() {
    Path f = dir.resolve("nope.safetensors");
    assertRejected(f, "does not exist");
    assertRejected(dir, "not a regular file");
  }
}
