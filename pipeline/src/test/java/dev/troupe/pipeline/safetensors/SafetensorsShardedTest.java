package dev.troupe.pipeline.safetensors;

import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.assertFails;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsShardedTest {
  @TempDir Path dir;

  /** Five F32 tensors of 10 elements (40 bytes) each, values encoding the tensor and the index. */
  private static SortedMap<String, TensorData> fiveTensors() {
    SortedMap<String, TensorData> t = new TreeMap<>();
    for (int k = 0; k < 5; k++) {
      float[] v = new float[10];
      for (int i = 0; i < v.length; i++) {
        v[i] = k * 100 + i;
      }
      t.put("layers." + k + ".weight", TensorData.ofFloats(new long[] {2, 5}, v));
    }
    return t;
  }

  private static List<String> listing(Path dir) throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  private static void writeIndex(Path dir, String json) throws IOException {
    Files.writeString(dir.resolve("model.safetensors.index.json"), json);
  }

  @Test
  void shardedWriteReadsBackThroughOpenFolder() throws IOException {
    SortedMap<String, TensorData> tensors = fiveTensors();
    SafetensorsWriter.writeSharded(dir, "model", tensors, 100);
    assertEquals(
        List.of(
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors",
            "model.safetensors.index.json"),
        listing(dir));
    JsonNode index = Json.MAPPER.readTree(dir.resolve("model.safetensors.index.json").toFile());
    assertEquals(200, index.get("metadata").get("total_size").asLong());
    assertEquals(
        "model-00003-of-00003.safetensors",
        index.get("weight_map").get("layers.4.weight").asText());
    try (TensorSource src = Safetensors.openFolder(dir, "model")) {
      ShardedSafetensors sharded = assertInstanceOf(ShardedSafetensors.class, src);
      assertEquals(List.copyOf(tensors.keySet()), List.copyOf(src.names()));
      assertEquals(dir, src.path());
      assertEquals(
          dir.resolve("model-00002-of-00003.safetensors"), sharded.shardOf("layers.3.weight"));
      for (Map.Entry<String, TensorData> e : tensors.entrySet()) {
        assertEquals(DType.F32, src.info(e.getKey()).dtype());
        assertArrayEquals(new long[] {2, 5}, src.info(e.getKey()).shape());
        assertEquals(e.getValue().bytes(), src.data(e.getKey()));
      }
      assertEquals(302f, src.data("layers.3.weight").getFloat(8));
      NoSuchElementException e =
          assertThrows(NoSuchElementException.class, () -> src.info("lm_head"));
      assertTrue(
          e.getMessage().contains("lm_head") && e.getMessage().contains("index.json"),
          e.getMessage());
    }
  }

  @Test
  void tensorLargerThanTheLimitGetsItsOwnShard() throws IOException {
    SortedMap<String, TensorData> t = new TreeMap<>();
    t.put("a", TensorData.ofFloats(new long[] {2}, new float[] {1, 2}));
    t.put("b", TensorData.ofFloats(new long[] {64}, new float[64]));
    t.put("c", TensorData.ofFloats(new long[] {2}, new float[] {3, 4}));
    SafetensorsWriter.writeSharded(dir, "adapter_model", t, 16);
    try (ShardedSafetensors s =
        ShardedSafetensors.open(dir.resolve("adapter_model.safetensors.index.json"))) {
      assertEquals(
          "adapter_model-00001-of-00003.safetensors", s.shardOf("a").getFileName().toString());
      assertEquals(
          "adapter_model-00002-of-00003.safetensors", s.shardOf("b").getFileName().toString());
      assertEquals(
          "adapter_model-00003-of-00003.safetensors", s.shardOf("c").getFileName().toString());
      assertEquals(4f, s.data("c").getFloat(4));
    }
    assertThrows(
        IllegalArgumentException.class, () -> SafetensorsWriter.writeSharded(dir, "m", t, 0));
  }

  @Test
  void openFolderPrefersIndexThenSingleFile() throws IOException {
    SafetensorsWriter.write(
        dir.resolve("adapter_model.safetensors"), fiveTensors(), Map.of("format", "pt"));
    try (TensorSource src = Safetensors.openFolder(dir, "adapter_model")) {
      SafetensorsFile f = assertInstanceOf(SafetensorsFile.class, src);
      assertEquals(Map.of("format", "pt"), f.metadata());
      assertEquals(5, src.names().size());
    }
    SafetensorsWriter.writeSharded(dir, "adapter_model", fiveTensors(), 80);
    try (TensorSource src = Safetensors.openFolder(dir, "adapter_model")) {
      assertInstanceOf(ShardedSafetensors.class, src);
    }
  }

  @Test
  void openFolderWithNothingToOpen() throws IOException {
    assertFails(
        dir,
        () -> Safetensors.openFolder(dir, "model"),
        "no model.safetensors.index.json or model.safetensors in this folder");
    Path missing = dir.resolve("absent");
    assertFails(missing, () -> Safetensors.openFolder(missing, "model"), "folder does not exist");
    Path file = Files.writeString(dir.resolve("plain"), "x");
    assertFails(file, () -> Safetensors.openFolder(file, "model"), "not a folder");
  }

  @Test
  void indexNamesAMissingShard() throws IOException {
    SafetensorsWriter.writeSharded(dir, "model", fiveTensors(), 100);
    Files.delete(dir.resolve("model-00002-of-00003.safetensors"));
    Path index = dir.resolve("model.safetensors.index.json");
    assertFails(
        index,
        () -> ShardedSafetensors.open(index),
        "shard model-00002-of-00003.safetensors",
        "does not exist");
  }

  @Test
  void malformedIndex() throws IOException {
    Path index = dir.resolve("model.safetensors.index.json");
    writeIndex(dir, "{\"metadata\": {\"total_size\": 0}}");
    assertFails(index, () -> Safetensors.openFolder(dir, "model"), "no \"weight_map\" object");
    writeIndex(dir, "{\"weight_map\": [\"model.safetensors\"]}");
    assertFails(index, () -> ShardedSafetensors.open(index), "no \"weight_map\" object");
    writeIndex(dir, "{\"weight_map\": {\"a\": 3}}");
    assertFails(index, () -> ShardedSafetensors.open(index), "weight_map entry for tensor a");
    writeIndex(dir, "{\"weight_map\": {\"a\": \"../other/model.safetensors\"}}");
    assertFails(
        index, () -> ShardedSafetensors.open(index), "not a file name in the index's folder");
    writeIndex(dir, "{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}}");
    assertFails(index, () -> ShardedSafetensors.open(index), "not valid JSON", "Duplicate");
    writeIndex(dir, "{\"weight_map\": ");
    assertFails(index, () -> ShardedSafetensors.open(index), "index is not valid JSON");
    Files.write(index, new byte[] {'{', (byte) 0xc3, '}'});
    assertFails(index, () -> ShardedSafetensors.open(index), "index is not valid UTF-8");
    Path absent = dir.resolve("nothing.index.json");
    assertFails(absent, () -> ShardedSafetensors.open(absent), "does not exist");
  }

  @Test
  void tensorListedButAbsentFromItsShard() throws IOException {
    SafetensorsWriter.writeSharded(dir, "model", fiveTensors(), 100);
    Path index = dir.resolve("model.safetensors.index.json");
    String json =
        Files.readString(index)
            .replace(
                "\"layers.4.weight\" : \"model-00003-of-00003.safetensors\"",
                "\"layers.4.weight\" : \"model-00001-of-00003.safetensors\"");
    Files.writeString(index, json);
    assertFails(
        index,
        () -> ShardedSafetensors.open(index),
        "tensor layers.4.weight is listed in shard model-00001-of-00003.safetensors",
        "does not contain it");
  }

  @Test
  void malformedShardIsNamed() throws IOException {
    SafetensorsWriter.writeSharded(dir, "model", fiveTensors(), 100);
    Path shard = dir.resolve("model-00003-of-00003.safetensors");
    Files.write(shard, "junk".getBytes(StandardCharsets.US_ASCII));
    assertFails(shard, () -> Safetensors.openFolder(dir, "model"), "too short");
  }

  @Test
  void emptyCheckpoint() throws IOException {
    SafetensorsWriter.writeSharded(dir, "model", new TreeMap<>(), 100);
    try (TensorSource src = Safetensors.openFolder(dir, "model")) {
      assertTrue(src.names().isEmpty());
    }
  }
}
