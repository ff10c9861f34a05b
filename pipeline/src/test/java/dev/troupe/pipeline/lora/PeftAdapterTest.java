package dev.troupe.pipeline.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.model.ModelFormatException;
import dev.troupe.pipeline.safetensors.SafetensorsWriter;
import dev.troupe.pipeline.safetensors.TensorData;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PeftAdapterTest {
  @TempDir Path dir;

  static TensorData zeros(long... shape) {
    long n = 1;
    for (long d : shape) n *= d;
    return TensorData.ofFloats(shape, new float[(int) n]);
  }

  SortedMap<String, TensorData> qv() {
    SortedMap<String, TensorData> t = new TreeMap<>();
    t.put(PeftAdapter.key(0, LoraTarget.Q_PROJ, 'A'), zeros(8, 64));
    t.put(PeftAdapter.key(0, LoraTarget.Q_PROJ, 'B'), zeros(64, 8));
    t.put(PeftAdapter.key(1, LoraTarget.V_PROJ, 'A'), zeros(8, 64));
    t.put(PeftAdapter.key(1, LoraTarget.V_PROJ, 'B'), zeros(32, 8));
    return t;
  }

  @Test
  void readsWhatItWrites() throws Exception {
    PeftAdapter.write(
        dir, 8, 16, 0.1, EnumSet.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ), qv(), "base");
    try (PeftAdapter a = PeftAdapter.open(dir)) {
      assertEquals(8, a.r());
      assertEquals(2.0, a.scaling());
      assertEquals(0.1, a.dropout());
      assertEquals(EnumSet.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ), a.targets());
      assertArrayEquals(
          new String[] {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
          },
          a.keys(0, LoraTarget.Q_PROJ));
      assertEquals(null, a.keys(0, LoraTarget.V_PROJ));
    }
  }

  @Test
  void rsloraAndDefaultAdapterNames() throws Exception {
    SortedMap<String, TensorData> t = new TreeMap<>();
    t.put("base_model.model.model.layers.0.mlp.down_proj.lora_A.default.weight", zeros(4, 96));
    t.put("base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight", zeros(64, 4));
    SafetensorsWriter.write(dir.resolve(PeftAdapter.WEIGHTS), t, Map.of());
    Files.writeString(
        dir.resolve(PeftAdapter.CONFIG),
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_rslora\": true,"
            + " \"target_modules\": [\"down_proj\"]}");
    try (PeftAdapter a = PeftAdapter.open(dir)) {
      assertEquals(4.0, a.scaling(), 1e-12, "alpha / sqrt(r)");
      assertEquals(EnumSet.of(LoraTarget.DOWN_PROJ), a.targets());
    }
  }

  String error(String config, SortedMap<String, TensorData> tensors) throws Exception {
    SafetensorsWriter.write(dir.resolve(PeftAdapter.WEIGHTS), tensors, Map.of());
    Files.writeString(dir.resolve(PeftAdapter.CONFIG), config);
    return assertThrows(ModelFormatException.class, () -> PeftAdapter.open(dir).close())
        .getMessage();
  }

  @Test
  void clearErrors() throws Exception {
    String ok = "{\"r\": 8, \"lora_alpha\": 16}";
    SortedMap<String, TensorData> onlyA =
        new TreeMap<>(Map.of(PeftAdapter.key(0, LoraTarget.Q_PROJ, 'A'), zeros(8, 64)));
    assertTrue(error(ok, onlyA).endsWith("layer 0 q_proj has lora_A without lora_B"));
    SortedMap<String, TensorData> embed =
        new TreeMap<>(Map.of("base_model.model.model.embed_tokens.lora_embedding_A", zeros(8, 10)));
    assertTrue(
        error(ok, embed)
            .contains("unexpected tensor base_model.model.model.embed_tokens.lora_embedding_A"));
    assertTrue(
        error("{\"r\": 8, \"lora_alpha\": 16, \"target_modules\": [\"lm_head\"]}", qv())
            .contains("target module \"lm_head\" is not supported"));
    assertTrue(
        error("{\"r\": 0, \"lora_alpha\": 16}", qv()).endsWith("r must be a positive integer"));
    assertTrue(
        error("{\"r\": 8, \"lora_alpha\": 16, \"peft_type\": \"IA3\"}", qv())
            .endsWith("peft_type IA3 is not supported (only LORA)"));
    assertTrue(
        error("{\"r\": 8, \"lora_alpha\": 16, \"rank_pattern\": {\"q_proj\": 4}}", qv())
            .endsWith("rank_pattern is not supported"));
    assertTrue(error("{\"r\": 8, ", qv()).contains("adapter_config.json: not valid JSON"));
    assertTrue(
        assertThrows(ModelFormatException.class, () -> PeftAdapter.open(dir.resolve("missing")))
            .getMessage()
            .endsWith("adapter folder does not exist"));
  }

  @Test
  void layersBeyondTheModelAreRejected() throws Exception {
    PeftAdapter.write(
        dir, 8, 16, 0, EnumSet.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ), qv(), "base");
    ModelConfig oneLayer =
        new ModelConfig(
            "llama", 300, 64, 96, 1, 4, 2, 16, 1e-6, 1e4, false, false, false, false, 0, 128,
            List.of(), -1);
    try (PeftAdapter a = PeftAdapter.open(dir)) {
      assertTrue(
          assertThrows(ModelFormatException.class, () -> a.validate(oneLayer))
              .getMessage()
              .endsWith("adapts layer 1 but the model has 1 layers"));
    }
  }
}
