package dev.troupe.pipeline.checkpoint;

import static dev.troupe.pipeline.checkpoint.CheckpointStoreTest.json;
import static dev.troupe.pipeline.checkpoint.CheckpointStoreTest.listing;
import static dev.troupe.pipeline.checkpoint.CheckpointStoreTest.loadedStep;
import static dev.troupe.pipeline.checkpoint.CheckpointStoreTest.save;
import static dev.troupe.pipeline.checkpoint.CheckpointStoreTest.tensors;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointSaveFailureTest {
  @TempDir Path root;

  /** A tensor map that blows up when the writer walks it, like a crash mid-save. */
  private static final class ExplodingTensors extends TreeMap<String, TensorData> {
    ExplodingTensors() {
      super(tensors(1, 2));
    }

    @Override
    public Set<Map.Entry<String, TensorData>> entrySet() {
      throw new IllegalStateException("simulated crash while writing");
    }
  }

  /** Saves "adapter_model.safetensors" (written first, by sorted name) then an exploding file. */
  private static void crashingSave(CheckpointStore store, long step) {
    Map<String, SortedMap<String, TensorData>> files = new TreeMap<>();
    files.put("adapter_model.safetensors", tensors(step, 1));
    files.put("optimizer.safetensors", new ExplodingTensors());
    IllegalStateException e =
        assertThrows(
            IllegalStateException.class,
            () -> store.save(step, files, Map.of("state.json", json("{\"step\": " + step + "}"))));
    assertEquals("simulated crash while writing", e.getMessage());
  }

  @Test
  void crashInTheMiddleOfSaveLeavesPreviousCheckpointsUntouched() throws IOException {
    Path dir = root.resolve("checkpoints");
    CheckpointStore store = new CheckpointStore(dir, 3);
    save(store, 100);
    Path previous = save(store, 200);
    byte[] manifestBefore = Files.readAllBytes(previous.resolve("manifest.json"));
    List<String> before = listing(dir);

    crashingSave(store, 300);

    assertEquals(before, listing(dir)); // no step-00000300, no temporary folder left
    assertEquals(List.of(100L, 200L), store.steps());
    assertTrue(
        java.util.Arrays.equals(
            manifestBefore, Files.readAllBytes(previous.resolve("manifest.json"))));
    List<String> reports = new ArrayList<>();
    assertEquals(200, loadedStep(store.latestValid(reports::add)));
    assertEquals(List.of(), reports);
  }

  @Test
  void crashWhileReplacingAStepKeepsTheOldOne() throws IOException {
    Path dir = root.resolve("checkpoints");
    CheckpointStore store = new CheckpointStore(dir, 3);
    save(store, 100);
    crashingSave(store, 100);
    assertEquals(List.of("step-00000100"), listing(dir));
    assertEquals(100, loadedStep(store.latestValid(r -> {})));
  }

  @Test
  void invalidFileNamesAreRejectedBeforeAnythingIsWritten() throws IOException {
    Path dir = root.resolve("checkpoints");
    CheckpointStore store = new CheckpointStore(dir, 3);
    SortedMap<String, TensorData> t = tensors(1);
    JsonNode j = json("{}");
    List<String> badTensorNames =
        List.of("a/b.safetensors", "..\\x.safetensors", ".safetensors", "x.json", "x", "");
    for (String name : badTensorNames) {
      assertThrows(
          IllegalArgumentException.class, () -> store.save(1, Map.of(name, t), Map.of()), name);
    }
    List<String> badJsonNames =
        List.of("manifest.json", "../state.json", ".hidden.json", "x.safetensors", "json");
    for (String name : badJsonNames) {
      assertThrows(
          IllegalArgumentException.class, () -> store.save(1, Map.of(), Map.of(name, j)), name);
    }
    assertThrows(
        IllegalArgumentException.class, () -> store.save(-1, Map.of(), Map.of("s.json", j)));
    assertFalse(Files.exists(dir));
    assertThrows(IllegalArgumentException.class, () -> new CheckpointStore(dir, 0));
  }

  @Test
  void checkpointAccessorsRejectBadNames() throws IOException {
    CheckpointStore store = new CheckpointStore(root.resolve("checkpoints"), 3);
    Checkpoint c = new Checkpoint(1, save(store, 1));
    assertThrows(IllegalArgumentException.class, () -> c.json("../state.json"));
    assertThrows(IllegalArgumentException.class, () -> c.json("manifest.json"));
    assertThrows(IllegalArgumentException.class, () -> c.tensors("state.json"));
    assertThrows(IOException.class, () -> c.tensors("absent.safetensors"));
    assertEquals(1, c.json("state.json").get("step").asInt());
  }
}
