package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.ComputeDtype;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HfModelTest {
  @TempDir Path dir;

  @Test
  void generationConfigEosTakesPrecedence() throws Exception {
    new RandomInit(TinyConfigs.llama()).seed(3).write(dir);
    try (HfModel m = HfModel.open(dir)) {
      assertEquals(List.of(2L), m.eosTokenIds(), "written by RandomInit from config.json's eos");
    }
    Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": [7, 9]}");
    try (HfModel m = HfModel.open(dir)) {
      assertEquals(List.of(7L, 9L), m.eosTokenIds());
    }
    Files.delete(dir.resolve("generation_config.json"));
    try (HfModel m = HfModel.open(dir)) {
      assertEquals(List.of(2L), m.eosTokenIds(), "config.json's eos without a generation config");
    }
    Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": \"x\"}");
    assertTrue(
        assertThrows(ModelFormatException.class, () -> HfModel.open(dir))
            .getMessage()
            .endsWith(
                "generation_config.json: eos_token_id must be an integer or a list of integers, got"
                    + " \"x\""));
  }

  @Test
  void greedyDecodingStopsAtAnEosToken() throws Exception {
    new RandomInit(TinyConfigs.llama()).seed(3).std(0.1).write(dir);
    try (HfModel m = HfModel.open(dir);
        CausalLm lm = CausalLm.load(m, ComputeDtype.FP32, null)) {
      long[] prompt = {1, 5, 9};
      long[] free = GreedyDecoder.generate(lm, prompt, 6, List.of());
      assertEquals(6, free.length);
      // the third token generated, declared an eos token, ends the generation there
      long[] stopped = GreedyDecoder.generate(lm, prompt, 6, List.of(free[2]));
      int first = 0;
      while (free[first] != free[2]) first++;
      assertArrayEquals(java.util.Arrays.copyOf(free, first + 1), stopped);
    }
  }

  @Test
  void missingWeights() throws Exception {
    new RandomInit(TinyConfigs.llama()).seed(3).write(dir);
    Files.delete(dir.resolve("model.safetensors"));
    String message = assertThrows(Exception.class, () -> HfModel.open(dir)).getMessage();
    assertTrue(message.contains(dir.toString()), message);
  }
}
