package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelConfigTest {
  @TempDir Path dir;

  ModelConfig read(String json) throws Exception {
    Path f = dir.resolve("config.json");
    Files.writeString(f, json);
    return ModelConfig.read(f);
  }

  String error(String json) {
    return assertThrows(ModelFormatException.class, () -> read(json)).getMessage();
  }

  static final String BASE =
      """
      "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
      "num_attention_heads": 4\
      """;

  @Test
  void llamaDefaults() throws Exception {
    ModelConfig c = read("{\"model_type\": \"llama\", " + BASE + "}");
    assertEquals(4, c.numKvHeads());
    assertEquals(16, c.headDim());
    assertEquals(10000.0, c.ropeTheta());
    assertFalse(c.tieWordEmbeddings());
    assertFalse(c.qkvBias());
    assertEquals(0, c.slidingWindow());
  }

  @Test
  void gqaHeadDimThetaAndEos() throws Exception {
    ModelConfig c =
        read(
            "{\"model_type\": \"llama\", "
                + BASE
                + ", \"num_key_value_heads\": 2, \"head_dim\": 32, \"rope_theta\": 500000.0,"
                + " \"eos_token_id\": [5, 7], \"tie_word_embeddings\": true, \"rope_scaling\":"
                + " null}");
    assertEquals(2, c.groupSize());
    assertEquals(32, c.headDim());
    assertEquals(500000.0, c.ropeTheta());
    assertEquals(List.of(5L, 7L), c.eosTokenIds());
    assertTrue(c.tieWordEmbeddings());
  }

  @Test
  void qwen2HasQkvBiasButNoOutputBias() throws Exception {
    ModelConfig c = read("{\"model_type\": \"qwen2\", " + BASE + ", \"sliding_window\": 8}");
    assertTrue(c.qkvBias());
    assertFalse(c.oBias());
    assertEquals(0, c.slidingWindow(), "qwen2 ignores sliding_window unless use_sliding_window");
  }

  @Test
  void mistralSlidingWindow() throws Exception {
    assertEquals(
        8,
        read("{\"model_type\": \"mistral\", " + BASE + ", \"sliding_window\": 8}").slidingWindow());
    assertEquals(
        4096,
        read("{\"model_type\": \"mistral\", " + BASE + "}").slidingWindow(),
        "transformers' default");
    assertEquals(
        0,
        read("{\"model_type\": \"mistral\", " + BASE + ", \"sliding_window\": null}")
            .slidingWindow());
  }

  @Test
  void writtenConfigReadsBack() throws Exception {
    for (ModelConfig c :
        List.of(
            TinyConfigs.llama(),
            TinyConfigs.of("qwen2", 1, true, true, 0),
            TinyConfigs.of("mistral", 4, false, false, 16),
            ModelPreset.BENCH_M.config())) {
      Path f = dir.resolve("c.json");
      Files.writeString(f, c.toJson().toString());
      assertEquals(c, ModelConfig.read(f));
    }
  }

  @Test
  void clearErrors() {
    assertTrue(
        error("{\"model_type\": \"gpt2\", " + BASE + "}")
            .endsWith(
                "config.json: unsupported architecture model_type=\"gpt2\" (supported: llama,"
                    + " mistral, qwen2)"));
    assertTrue(error("{" + BASE + "}").endsWith("config.json: missing model_type"));
    assertTrue(
        error("{\"model_type\": \"llama\", \"hidden_size\": 64}")
            .endsWith("config.json: missing num_attention_heads"));
    assertTrue(
        error("{\"model_type\": \"llama\", " + BASE + ", \"num_key_value_heads\": 3}")
            .endsWith("num_attention_heads 4 is not a multiple of num_key_value_heads 3"));
    assertTrue(
        error("{\"model_type\": \"llama\", " + BASE + ", \"hidden_act\": \"gelu\"}")
            .endsWith("unsupported hidden_act \"gelu\" (only silu)"));
    assertTrue(
        error(
                "{\"model_type\": \"llama\", "
                    + BASE
                    + ", \"rope_scaling\": {\"rope_type\": \"llama3\"}}")
            .endsWith(
                "unsupported rope_scaling type \"llama3\" (only the default rotary embedding)"));
    assertTrue(
        error("{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": \"64\"}")
            .endsWith("hidden_size must be a positive integer, got \"64\""));
    assertTrue(
        error("{\"model_type\": \"qwen2\", " + BASE + ", \"use_sliding_window\": true}")
            .endsWith("use_sliding_window=true is not supported for qwen2"));
    assertTrue(error("{not json").contains("config.json: not valid JSON"));
    assertTrue(error("[1, 2]").endsWith("config.json: not a JSON object"));
  }
}
