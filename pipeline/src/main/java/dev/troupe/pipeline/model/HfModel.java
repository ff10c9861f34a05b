package dev.troupe.pipeline.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.pipeline.safetensors.Safetensors;
import dev.troupe.pipeline.safetensors.TensorSource;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A Hugging Face model folder as it is on disk: {@code config.json}, {@code model.safetensors} or a
 * sharded {@code model.safetensors.index.json}, optionally {@code generation_config.json} and
 * {@code tokenizer.json}. Weights stay memory-mapped until a stage reads its part.
 */
public final class HfModel implements AutoCloseable {
  private final Path dir;
  private final ModelConfig config;
  private final TensorSource weights;
  private final List<Long> eosTokenIds;

  private HfModel(Path dir, ModelConfig config, TensorSource weights, List<Long> eosTokenIds) {
    this.dir = dir;
    this.config = config;
    this.weights = weights;
    this.eosTokenIds = eosTokenIds;
  }

  /** Opens a model folder; errors name the folder or file and what is missing or wrong. */
  public static HfModel open(Path dir) throws IOException {
    if (!Files.isDirectory(dir)) throw new ModelFormatException(dir, "model folder does not exist");
    Path cfg = dir.resolve("config.json");
    if (!Files.isRegularFile(cfg))
      throw new ModelFormatException(dir, "no config.json (not a Hugging Face model folder)");
    ModelConfig config = ModelConfig.read(cfg);
    List<Long> eos = generationEos(dir.resolve("generation_config.json"));
    TensorSource weights = Safetensors.openFolder(dir, "model");
    return new HfModel(dir, config, weights, eos.isEmpty() ? config.eosTokenIds() : eos);
  }

  /** eos ids of {@code generation_config.json}, which take precedence over config.json's. */
  private static List<Long> generationEos(Path file) throws IOException {
    if (!Files.isRegularFile(file)) return List.of();
    JsonNode root;
    try {
      root = new ObjectMapper().readTree(file.toFile());
    } catch (IOException e) {
      throw new ModelFormatException(file, "not valid JSON: " + e.getMessage());
    }
    JsonNode n = root == null ? null : root.get("eos_token_id");
    if (n == null || n.isNull()) return List.of();
    List<Long> out = new ArrayList<>();
    if (n.isIntegralNumber()) {
      out.add(n.asLong());
    } else if (n.isArray()) {
      for (JsonNode e : n) {
        if (!e.isIntegralNumber())
          throw new ModelFormatException(file, "eos_token_id must hold integers, got " + n);
        out.add(e.asLong());
      }
    } else {
      throw new ModelFormatException(
          file, "eos_token_id must be an integer or a list of integers, got " + n);
    }
    return out;
  }

  public Path dir() {
    return dir;
  }

  public ModelConfig config() {
    return config;
  }

  public TensorSource weights() {
    return weights;
  }

  /** Token ids that end generation: generation_config.json's, else config.json's. */
  public List<Long> eosTokenIds() {
    return eosTokenIds;
  }

  /** True where the folder has a {@code tokenizer.json}. */
  public boolean hasTokenizer() {
    return Files.isRegularFile(dir.resolve("tokenizer.json"));
  }

  @Override
  public void close() throws IOException {
    weights.close();
  }
}
