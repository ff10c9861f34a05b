package dev.troupe.pipeline.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import dev.troupe.pipeline.safetensors.SafetensorsFile;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A complete checkpoint on disk, as returned by {@link CheckpointStore#latestValid}.
 *
 * @param step the training step it was saved at
 * @param dir its folder, {@code <store>/step-<step padded to 8 digits>}
 */
public record Checkpoint(long step, Path dir) {
  /** Checks the fields are present. */
  public Checkpoint {
    Objects.requireNonNull(dir, "dir");
  }

  /**
   * Opens one of the checkpoint's safetensors files; the caller closes it.
   *
   * @throws IllegalArgumentException if {@code fileName} is not a plain {@code *.safetensors} name
   * @throws IOException if the file is missing or malformed
   */
  public SafetensorsFile tensors(String fileName) throws IOException {
    return SafetensorsFile.open(
        dir.resolve(CheckpointFiles.checkName(fileName, CheckpointFiles.SAFETENSORS)));
  }

  /**
   * Reads one of the checkpoint's JSON files.
   *
   * @throws IllegalArgumentException if {@code fileName} is not a plain {@code *.json} name
   * @throws IOException if the file is missing or not valid JSON
   */
  public JsonNode json(String fileName) throws IOException {
    return CheckpointFiles.readJson(
        dir.resolve(CheckpointFiles.checkName(fileName, CheckpointFiles.JSON)));
  }
}
