package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.cli.Main;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** FP32 warm-up, then bf16 or fp16; fp16's loss scaling skips overflowing steps. */
class MixedPrecisionTrainingTest {
  @TempDir static Path dir;

  @BeforeAll
  static void data() throws Exception {
    TrainingJobs.writeModelAndData(dir);
  }

  static void train(Path job) {
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int status =
        Main.run(
            new String[] {"train", job.toString()},
            new PrintStream(new ByteArrayOutputStream()),
            new PrintStream(err));
    assertEquals(0, status, err.toString());
  }

  @Test
  void fp16OverflowSkipsTheUpdateAndHalvesTheScale() throws Exception {
    // 2^126 overflows fp16 gradients at once; each skipped step halves it until they fit
    train(
        TrainingJobs.job(
            dir,
            "overflow",
            "steps = 3\n"
                + "precision { mode = fp16, fp32-warmup-steps = 0, initial-loss-scale ="
                + " 8.507059173023462e37 }"));
    List<JsonNode> steps = TrainingJobs.steps(dir.resolve("overflow/metrics.jsonl"));
    double scale = 8.507059173023462e37;
    for (JsonNode s : steps) {
      assertEquals("fp16", s.get("precision").asText());
      assertTrue(s.get("skipped").asBoolean(), "step " + s.get("step") + " overflowed: " + s);
      assertEquals(scale, s.get("loss_scale").asDouble(), 0.0);
      scale /= 2;
    }
  }

  @Test
  void fp16WithTheDefaultScaleTrains() throws Exception {
    train(
        TrainingJobs.job(
            dir, "fp16", "steps = 6\nprecision { mode = fp16, fp32-warmup-steps = 2 }"));
    List<JsonNode> steps = TrainingJobs.steps(dir.resolve("fp16/metrics.jsonl"));
    assertEquals(
        List.of("fp32", "fp32", "fp16", "fp16", "fp16", "fp16"),
        steps.stream().map(s -> s.get("precision").asText()).toList());
    for (JsonNode s : steps) assertFalse(s.get("skipped").asBoolean(), s.toString());
    assertEquals(65536.0, steps.get(5).get("loss_scale").asDouble());
  }

  @Test
  void bf16AndFp16ReachTheFp32EvalLossWithin2Percent() throws Exception {
    Files.copy(dir.resolve("train.jsonl"), dir.resolve("eval.jsonl"));
    double fp32 = finalEval("p-fp32", "fp32");
    double bf16 = finalEval("p-bf16", "bf16");
    double fp16 = finalEval("p-fp16", "fp16");
    System.out.printf(
        "eval loss after 30 steps: fp32 %.5f, bf16 %.5f (%+.2f%%), fp16 %.5f (%+.2f%%)%n",
        fp32, bf16, 100 * (bf16 / fp32 - 1), fp16, 100 * (fp16 / fp32 - 1));
    assertEquals(fp32, bf16, 0.02 * fp32);
    assertEquals(fp32, fp16, 0.02 * fp32);
  }

  double finalEval(String name, String mode) throws Exception {
    train(
        TrainingJobs.job(
            dir,
            name,
            """
            steps = 30
            data.eval = "%s"
            eval.every = 30
            precision { mode = %s, fp32-warmup-steps = 5 }
            """
                .formatted(dir.resolve("eval.jsonl"), mode)));
    JsonNode last = null;
    for (String line : Files.readAllLines(dir.resolve(name + "/metrics.jsonl"))) {
      JsonNode n = new ObjectMapper().readTree(line);
      if (n.path("event").asText().equals("eval")) last = n;
    }
    assertEquals(30, last.get("step").asInt());
    return last.get("eval_loss").asDouble();
  }
}
