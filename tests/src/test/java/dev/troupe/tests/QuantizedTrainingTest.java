package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Training over a quantized base: quant_check events at step 0 and every check-every steps with
 * per-layer errors, promotions under a low threshold, and a resumed run that keeps the layers'
 * formats and so the trajectory.
 */
class QuantizedTrainingTest {
  @TempDir static Path dir;

  private static final String QUANTIZED =
      "precision { mode = bf16, fp32-warmup-steps = 1 }\n"
          + "lora.dropout = 0\n"
          + "optimizer.schedule = constant\n"
          + "checkpoint.every = 2\n"
          + "quantization { base = nf4, check-every = 2, promote-above = 0.02 }\n";

  @BeforeAll
  static void data() throws Exception {
    TrainingJobs.writeModelAndData(dir);
  }

  /** The quant_check lines of {@code metrics}, in order. */
  static List<JsonNode> checks(Path metrics) throws Exception {
    List<JsonNode> out = new ArrayList<>();
    for (String line : Files.readAllLines(metrics)) {
      JsonNode n = new ObjectMapper().readTree(line);
      if ("quant_check".equals(n.path("event").asText())) out.add(n);
    }
    return out;
  }

  @Test
  void checksMeasureEveryLayerAndPromoteAboveTheThreshold() throws Exception {
    MixedPrecisionTrainingTest.train(TrainingJobs.job(dir, "checks", "steps = 4\n" + QUANTIZED));
    List<JsonNode> checks = checks(dir.resolve("checks/metrics.jsonl"));
    assertEquals(List.of(0L, 2L, 4L), checks.stream().map(c -> c.get("step").asLong()).toList());
    int layers = 2 * 7; // two decoder layers, seven linear layers each
    for (JsonNode c : checks) assertEquals(layers, c.get("layers").size(), c.toString());
    // NF4's error (about 0.1 on these weights) is above 0.02: everything moves up to INT8 at once
    for (JsonNode l : checks.get(0).get("layers")) {
      assertEquals("nf4", l.get("format").asText());
      assertTrue(l.get("error").asDouble() > 0.02, l.toString());
      assertEquals("promote", l.get("action").asText());
      assertEquals("int8", l.get("to").asText());
    }
    assertEquals(layers, checks.get(0).get("changes").asInt());
    assertTrue(
        checks.get(0).get("frozen_bytes_after").asLong()
            > checks.get(0).get("frozen_bytes").asLong());
    // ... where the error is below the threshold, so it stays
    for (JsonNode c : checks.subList(1, 3)) {
      for (JsonNode l : c.get("layers")) {
        assertEquals("int8", l.get("format").asText());
        double e = l.get("error").asDouble();
        assertTrue(e > 0 && e < 0.02, l.toString());
        assertEquals("keep", l.get("action").asText());
      }
    }
  }

  @Test
  void recomputingLayersGivesTheSameTrajectory() throws Exception {
    // the hooks' backward (no recomputation) against a backward through recomputed layers
    MixedPrecisionTrainingTest.train(TrainingJobs.job(dir, "hooks", "steps = 3\n" + QUANTIZED));
    MixedPrecisionTrainingTest.train(
        TrainingJobs.job(
            dir, "recompute", "steps = 3\ngradient-checkpointing = true\n" + QUANTIZED));
    List<JsonNode> hooks = TrainingJobs.steps(dir.resolve("hooks/metrics.jsonl"));
    List<JsonNode> recompute = TrainingJobs.steps(dir.resolve("recompute/metrics.jsonl"));
    assertEquals(3, hooks.size());
    for (int i = 0; i < 3; i++) {
      double a = hooks.get(i).get("loss").asDouble();
      double b = recompute.get(i).get("loss").asDouble();
      assertEquals(a, b, 1e-5 * Math.abs(a), "step " + (i + 1));
    }
  }

  @Test
  void aResumedRunKeepsTheFormatsAndTheTrajectory() throws Exception {
    MixedPrecisionTrainingTest.train(TrainingJobs.job(dir, "whole", "steps = 4\n" + QUANTIZED));
    MixedPrecisionTrainingTest.train(TrainingJobs.job(dir, "halves", "steps = 2\n" + QUANTIZED));
    MixedPrecisionTrainingTest.train(TrainingJobs.job(dir, "halves", "steps = 4\n" + QUANTIZED));
    List<JsonNode> whole = TrainingJobs.steps(dir.resolve("whole/metrics.jsonl"));
    List<JsonNode> halves = TrainingJobs.steps(dir.resolve("halves/metrics.jsonl"));
    assertEquals(4, whole.size());
    assertEquals(4, halves.size());
    for (int i = 0; i < 4; i++) {
      assertEquals(
          whole.get(i).get("loss").asDouble(),
          halves.get(i).get("loss").asDouble(),
          1e-6 * Math.abs(whole.get(i).get("loss").asDouble()),
          "step " + (i + 1));
    }
    assertEquals(
        checks(dir.resolve("whole/metrics.jsonl")).get(2).get("layers"),
        checks(dir.resolve("halves/metrics.jsonl")).get(2).get("layers"));
  }
}
