package dev.troupe.pipeline.safetensors;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Entry points for reading Hugging Face style safetensors checkpoints. */
public final class Safetensors {
  private Safetensors() {}

  /**
   * Opens a Hugging Face model folder's weights: {@code <baseName>.safetensors.index.json} if
   * present, else {@code <baseName>.safetensors}; else an error naming the folder.
   *
   * @param baseName {@code "model"} or {@code "adapter_model"}
   * @throws SafetensorsException if the folder is missing, holds neither file, or a file is
   *     malformed
   */
  public static TensorSource openFolder(Path folder, String baseName) throws IOException {
    if (!Files.isDirectory(folder)) {
      throw new SafetensorsException(
          folder, Files.exists(folder) ? "not a folder" : "folder does not exist");
    }
    Path index = folder.resolve(baseName + ".safetensors.index.json");
    if (Files.exists(index)) {
      return ShardedSafetensors.open(index);
    }
    Path single = folder.resolve(baseName + ".safetensors");
    if (Files.exists(single)) {
      return SafetensorsFile.open(single);
    }
    throw new SafetensorsException(
        folder, "no " + index.getFileName() + " or " + single.getFileName() + " in this folder");
  }
}
