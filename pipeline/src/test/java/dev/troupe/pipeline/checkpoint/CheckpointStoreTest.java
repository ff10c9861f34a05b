package dev.troupe.pipeline.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.pipeline.safetensors.SafetensorsFile;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointStoreTest {
  private static final ObjectMapper MAPPER = new ObjectMapper();

  @TempDir Path root;

  private Path dir() {
    return root.resolve("checkpoints");
  }

  static SortedMap<String, TensorData> tensors(float... values) {
    TreeMap<String, TensorData> m = new TreeMap<>();
    m.put("layer.0.lora_A", TensorData.ofFloats(new long[] {values.length}, values));
    m.put("layer.0.lora_B", TensorData.ofFloats(new long[] {1, 2}, new float[] {-1, values[0]}));
    return m;
  }

  static JsonNode json(String text) throws IOException {
    return MAPPER.readTree(text);
  }

  /** Saves an adapter, an optimizer and a state file whose contents depend on {@code step}. */
  static Path save(CheckpointStore store, long step) throws IOException {
    return store.save(
        step,
        Map.of(
            "adapter_model.safetensors", tensors(step, 2, 3),
            "optimizer.safetensors", tensors(step * 10, 5)),
        Map.of("state.json", json("{\"step\": " + step + ", \"lr\": 0.001}")));
  }

  List<String> listing() throws IOException {
    return listing(dir());
  }

  static List<String> listing(Path folder) throws IOException {
    try (Stream<Path> s = Files.list(folder)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  static long loadedStep(Optional<Checkpoint> c) throws IOException {
    assertTrue(c.isPresent(), "no checkpoint");
    return c.get().json("state.json").get("step").asLong();
  }

  static void flipLastByte(Path file) throws IOException {
    try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
      f.seek(f.length() - 1);
      int b = f.read();
      f.seek(f.length() - 1);
      f.write(b ^ 0x40);
    }
  }

  @Test
  void roundTripsTensorsAndJson() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 3);
    Path saved = save(store, 100);
    assertEquals(dir().resolve("step-00000100"), saved);
    List<String> reports = new ArrayList<>();
    Checkpoint c = store.latestValid(reports::add).orElseThrow();
    assertEquals(List.of(), reports);
    assertEquals(new Checkpoint(100, saved), c);
    try (SafetensorsFile f = c.tensors("adapter_model.safetensors")) {
      assertEquals(Set.of("layer.0.lora_A", "layer.0.lora_B"), f.names());
      SortedMap<String, TensorData> want = tensors(100, 2, 3);
      for (String name : f.names()) {
        TensorData w = want.get(name);
        assertEquals(w.dtype(), f.info(name).dtype());
        assertArrayEquals(w.shape(), f.info(name).shape());
        assertEquals(w.bytes(), f.data(name));
      }
      assertEquals(Map.of("format", "pt"), f.metadata());
    }
    assertEquals(json("{\"step\": 100, \"lr\": 0.001}"), c.json("state.json"));
    assertEquals(
        List.of(
            "adapter_model.safetensors", "manifest.json", "optimizer.safetensors", "state.json"),
        listing(saved));
    JsonNode manifest = MAPPER.readTree(saved.resolve("manifest.json").toFile());
    assertEquals(1, manifest.get("format").asInt());
    assertEquals(100, manifest.get("step").asLong());
    Instant.parse(manifest.get("created").asText());
    JsonNode state = manifest.get("files").get("state.json");
    assertEquals(Files.size(saved.resolve("state.json")), state.get("bytes").asLong());
    assertEquals(CheckpointFiles.sha256(saved.resolve("state.json")), state.get("sha256").asText());
    assertEquals(3, manifest.get("files").size());
    assertEquals(List.of(100L), store.steps());
    assertEquals(List.of("step-00000100"), listing());
  }

  @Test
  void keepsTheNewestCheckpoints() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 2);
    for (long step : new long[] {100, 200, 300, 400}) {
      save(store, step);
    }
    assertEquals(List.of(300L, 400L), store.steps());
    assertEquals(List.of("step-00000300", "step-00000400"), listing());
    assertEquals(400, loadedStep(store.latestValid(r -> {})));
  }

  @Test
  void neverPrunesTheCheckpointJustWritten() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 1);
    save(store, 300);
    save(store, 200); // e.g. a run resumed from an earlier step
    assertEquals(List.of(200L, 300L), store.steps());
    save(store, 400);
    assertEquals(List.of(400L), store.steps());
  }

  @Test
  void corruptCheckpointIsReportedMovedAsideAndSkipped() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 3);
    save(store, 100);
    Path bad = save(store, 200);
    flipLastByte(bad.resolve("optimizer.safetensors"));
    List<String> reports = new ArrayList<>();
    assertEquals(100, loadedStep(store.latestValid(reports::add)));
    assertEquals(1, reports.size(), reports.toString());
    String r = reports.get(0);
    assertTrue(
        r.startsWith(
            "checkpoint step-00000200 is corrupt (optimizer.safetensors: sha256 mismatch)"),
        r);
    assertTrue(r.endsWith("trying step-00000100"), r);
    assertFalse(Files.exists(bad));
    List<String> names = listing();
    assertEquals(2, names.size(), names.toString());
    assertEquals("step-00000100", names.get(0));
    assertTrue(names.get(1).matches("step-00000200\\.corrupt-\\d{8}T\\d{6}Z"), names.get(1));
    assertTrue(r.contains("moved to " + names.get(1)), r);
    assertEquals(List.of(100L), store.steps());
    // not tried again
    reports.clear();
    assertEquals(100, loadedStep(store.latestValid(reports::add)));
    assertEquals(List.of(), reports);
  }

  @Test
  void truncatedFileIsReportedBySize() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 3);
    save(store, 100);
    Path bad = save(store, 200);
    Path file = bad.resolve("adapter_model.safetensors");
    long size = Files.size(file);
    try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
      f.setLength(size - 4);
    }
    List<String> reports = new ArrayList<>();
    assertEquals(100, loadedStep(store.latestValid(reports::add)));
    String r = reports.get(0);
    assertTrue(
        r.contains(
            "step-00000200 is corrupt (adapter_model.safetensors: size "
                + (size - 4)
                + " bytes, manifest says "
                + size),
        r);
  }

  @Test
  void everyCheckpointCorruptGivesEmpty() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 3);
    Path only = save(store, 100);
    Files.delete(only.resolve("state.json"));
    List<String> reports = new ArrayList<>();
    assertEquals(Optional.empty(), store.latestValid(reports::add));
    assertTrue(reports.get(0).contains("(state.json: missing)"), reports.toString());
    assertTrue(reports.get(0).endsWith("no older checkpoint to try"), reports.toString());
  }

  @Test
  void badManifestOrStepMismatchIsCorrupt() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 5);
    save(store, 100);
    Path garbled = save(store, 200);
    Files.writeString(garbled.resolve("manifest.json"), "{\"format\": 1, ");
    Path renamed = dir().resolve("step-00000300");
    Files.move(save(store, 250), renamed);
    List<String> reports = new ArrayList<>();
    assertEquals(100, loadedStep(store.latestValid(reports::add)));
    assertEquals(2, reports.size(), reports.toString());
    assertTrue(
        reports.get(0).startsWith("checkpoint step-00000300 is corrupt (manifest.json: step 250"),
        reports.get(0));
    assertTrue(
        reports.get(1).startsWith("checkpoint step-00000200 is corrupt (manifest.json: unreadable"),
        reports.get(1));
  }

  @Test
  void pruningLeavesCorruptCheckpointsAlone() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 2);
    save(store, 100);
    flipLastByte(save(store, 200).resolve("state.json"));
    save(store, 300);
    // 200 does not count as one of the two kept, and is not deleted silently either
    assertEquals(List.of(100L, 200L, 300L), store.steps());
    List<String> reports = new ArrayList<>();
    assertEquals(300, loadedStep(store.latestValid(reports::add)));
    assertEquals(List.of(), reports);
  }

  @Test
  void folderWithoutManifestIsIgnoredAsIncomplete() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 3);
    Path good = save(store, 100);
    Path partial = Files.createDirectory(dir().resolve("step-00000200"));
    Files.copy(good.resolve("state.json"), partial.resolve("state.json"));
    List<String> reports = new ArrayList<>();
    assertEquals(100, loadedStep(store.latestValid(reports::add)));
    assertEquals(
        List.of("checkpoint step-00000200 is incomplete (no manifest.json); ignoring it"), reports);
    assertTrue(Files.exists(partial.resolve("state.json")));
    assertEquals(List.of(100L), store.steps());
  }

  @Test
  void leftoverTemporaryFolderIsIgnoredAndCleanedByTheNextSave() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 3);
    save(store, 100);
    // what a crash in the middle of saving step 200 leaves behind
    Path leftover = Files.createDirectory(dir().resolve(".step-00000200.tmp-1f2e3d"));
    Files.writeString(leftover.resolve("state.json"), "{\"step\": 200}");
    Files.setLastModifiedTime(leftover, FileTime.from(Instant.now().minus(1, ChronoUnit.HOURS)));
    List<String> reports = new ArrayList<>();
    assertEquals(100, loadedStep(store.latestValid(reports::add)));
    assertEquals(List.of(), reports);
    assertEquals(List.of(100L), store.steps());
    save(store, 200);
    assertEquals(List.of("step-00000100", "step-00000200"), listing());
  }

  @Test
  void savingTheSameStepAgainReplacesIt() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 3);
    save(store, 100);
    store.save(
        100,
        Map.of("adapter_model.safetensors", tensors(7)),
        Map.of("state.json", json("{\"step\": 100, \"attempt\": 2}")));
    assertEquals(List.of("step-00000100"), listing());
    Checkpoint c = store.latestValid(r -> {}).orElseThrow();
    assertEquals(2, c.json("state.json").get("attempt").asInt());
    assertFalse(Files.exists(c.dir().resolve("optimizer.safetensors")));
    try (SafetensorsFile f = c.tensors("adapter_model.safetensors")) {
      assertEquals(7f, f.data("layer.0.lora_A").getFloat(0));
    }
  }

  @Test
  void noCheckpointGivesEmpty() throws IOException {
    CheckpointStore store = new CheckpointStore(dir(), 3);
    assertEquals(Optional.empty(), store.latestValid(r -> {}));
    assertEquals(List.of(), store.steps());
    Files.createDirectories(dir());
    assertEquals(Optional.empty(), store.latestValid(r -> {}));
  }

  @Test
  void createsMissingParentFolders() throws IOException {
    Path deep = root.resolve("run/output/checkpoints");
    CheckpointStore store = new CheckpointStore(deep, 1);
    assertEquals(deep.resolve("step-00000005"), save(store, 5));
    assertEquals(List.of(5L), store.steps());
  }
}
