package dev.troupe.pipeline.safetensors;

import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.assertFails;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.concat;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.entry;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.u64;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsWriterTest {
  @TempDir Path dir;

  private static TreeMap<String, TensorData> one(String name, float... values) {
    return new TreeMap<>(Map.of(name, TensorData.ofFloats(new long[] {values.length}, values)));
  }

  private List<String> listing() throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  @Test
  void atomicWriteReplacesAnExistingFileAndLeavesNoTempFile() throws IOException {
    Path f = dir.resolve("model.safetensors");
    SafetensorsWriter.write(f, one("old", 1, 2, 3), null);
    try (SafetensorsFile before = SafetensorsFile.open(f)) {
      ByteBuffer oldData = before.data("old");
      SafetensorsWriter.write(f, one("new", 9), Map.of("v", "2"));
      assertEquals(List.of("model.safetensors"), listing());
      try (SafetensorsFile after = SafetensorsFile.open(f)) {
        assertEquals(Set.of("new"), after.names());
        assertEquals(9f, after.data("new").getFloat(0));
        assertEquals(Map.of("v", "2"), after.metadata());
      }
      // the rename left the old inode intact for a reader that had it open
      assertEquals(3f, oldData.getFloat(8));
      assertEquals(3f, before.data("old").getFloat(8));
    }
  }

  @Test
  void failedWriteLeavesTheExistingFileAlone() throws IOException {
    Path f = dir.resolve("model.safetensors");
    SafetensorsWriter.write(f, one("w", 1), null);
    byte[] before = Files.readAllBytes(f);
    TreeMap<String, TensorData> bad = one("__metadata__", 2);
    assertThrows(IllegalArgumentException.class, () -> SafetensorsWriter.write(f, bad, null));
    assertArrayEquals(before, Files.readAllBytes(f));
    assertEquals(List.of("model.safetensors"), listing());
  }

  @Test
  void writingIntoAMissingFolderFails() throws IOException {
    Path f = dir.resolve("no/such/folder/model.safetensors");
    assertFails(f, () -> SafetensorsWriter.write(f, one("w", 1), null), "folder", "does not exist");
    assertFalse(Files.exists(dir.resolve("no")));
    Path missing = dir.resolve("absent");
    assertFails(
        missing,
        () -> SafetensorsWriter.writeSharded(missing, "model", one("w", 1), 10),
        "folder does not exist");
    assertEquals(List.of(), listing());
  }

  @Test
  void headerIsPaddedWithSpacesToAMultipleOfEight() throws IOException {
    for (int len = 1; len <= 9; len++) {
      Path f = dir.resolve("p" + len + ".safetensors");
      SafetensorsWriter.write(f, one("x".repeat(len), 1), null);
      byte[] all = Files.readAllBytes(f);
      long n = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
      assertEquals(0, n % 8);
      String header = new String(all, 8, (int) n, StandardCharsets.UTF_8);
      assertEquals(header.strip(), header.substring(0, header.lastIndexOf('}') + 1));
      assertEquals(8 + n + 4, all.length);
    }
  }

  /** A sparse file over 2 GiB: each small tensor still maps, even one that starts past 2 GiB. */
  @Test
  void filesOverTwoGibWorkTensorByTensor() throws IOException {
    long far = 3L << 30;
    String json =
        "{"
            + entry("a", "U8", "[16]", "[0,16]")
            + ","
            + entry("far", "F32", "[4]", "[" + far + "," + (far + 16) + "]")
            + "}";
    byte[] h = json.getBytes(StandardCharsets.US_ASCII);
    Path f =
        SafetensorsFixtures.bytes(
            dir, "big.safetensors", concat(u64(h.length), h, SafetensorsFixtures.seq(16)));
    long dataStart = 8 + h.length;
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
      raf.seek(dataStart + far);
      ByteBuffer v = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
      v.asFloatBuffer().put(new float[] {1.5f, 2.5f, 3.5f, 4.5f});
      raf.write(v.array());
    }
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertEquals(4.5f, sf.data("far").getFloat(12));
      assertEquals(16, sf.data("a").remaining());
    }
  }

  @Test
  void tensorOfTwoGibOrMoreIsRefusedByName() throws IOException {
    long size = (5L << 30) / 2; // 2.5 GiB
    String json =
        "{"
            + entry("huge", "U8", "[" + size + "]", "[0," + size + "]")
            + ","
            + entry(
                "edge", "U8", "[" + (1L << 31) + "]", "[" + size + "," + (size + (1L << 31)) + "]")
            + "}";
    byte[] h = json.getBytes(StandardCharsets.US_ASCII);
    Path f = SafetensorsFixtures.bytes(dir, "huge.safetensors", concat(u64(h.length), h));
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
      raf.setLength(8 + h.length + size + (1L << 31));
    }
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertEquals(size, sf.info("huge").byteLength());
      UncheckedIOException e = assertThrows(UncheckedIOException.class, () -> sf.data("huge"));
      SafetensorsException cause = assertInstanceOf(SafetensorsException.class, e.getCause());
      assertEquals(
          f + ": tensor huge is 2.5 GiB; tensors over 2 GiB are not supported", cause.getMessage());
      assertThrows(UncheckedIOException.class, () -> sf.data("edge"));
    }
  }
}
