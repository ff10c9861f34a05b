package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.troupe.pipeline.dist.LocalRun;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.GreedyDecoder;
import dev.troupe.pipeline.model.ShardSpec;
import dev.troupe.pipeline.model.StageSpec;
import dev.troupe.pipeline.train.Evaluator;
import dev.troupe.pipeline.train.Trainer;
import dev.troupe.pipeline.train.TrainingSetup;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Eval through a plan's stages ({@code StageWorker.evaluate}) gives what the one-device trainer's
 * eval gives: the same eval loss, and the same exact-match accuracy of greedy generations, each new
 * token run through every stage. The eval data is made so that exact match is neither 0 nor 1: the
 * references of half the examples are the base model's own greedy answers.
 */
class PipelineEvalTest {
  @TempDir Path dir;
  private static final PrintStream QUIET = new PrintStream(OutputStream.nullOutputStream());
  private static final int MAX_NEW = 6;

  @Test
  void everyPlanEvaluatesAsOneDeviceDoes() throws Exception {
    // ParallelPlansTest's model, with room for alpaca's prompt template in byte-level tokens
    TrainingJobs.writeModelAndData(dir, ParallelPlansTest.config(1024));
    assertTrue(Files.exists(dir.resolve("model/tokenizer.json")), "the model has a tokenizer");
    writeAlpaca(dir.resolve("alpaca.jsonl"), 16, new Random(4), null);
    writeAlpaca(dir.resolve("eval-draft.jsonl"), 6, new Random(5), null);
    // the base model's greedy answers to the eval prompts (B = 0 before the first step)
    List<String> answers = new ArrayList<>();
    JobConfig draft = job("draft", "eval-draft.jsonl");
    try (TrainingSetup s = TrainingSetup.open(draft, QUIET);
        CausalLm lm =
            s.loadStage(
                ComputeDtype.FP32,
                null,
                StageSpec.of(s.model().config(), 0, s.model().config().numLayers()),
                new ShardSpec(0, 1))) {
      lm.lendLora(s.lora().weights(), 0.0);
      for (int i = 0; i < s.eval().size(); i++) {
        long[] out = GreedyDecoder.generate(lm, s.eval().promptIds(i), MAX_NEW, s.eos());
        answers.add(s.tokenizer().decode(out, true).strip());
      }
    }
    writeAlpaca(dir.resolve("eval.jsonl"), 6, new Random(5), answers);

    JobConfig single = job("single", "eval.jsonl");
    new Trainer(single, QUIET, false).run();
    List<JsonNode> evals = new ArrayList<>();
    for (String line : Files.readAllLines(dir.resolve("single/metrics.jsonl"))) {
      JsonNode n = new ObjectMapper().readTree(line);
      if (n.path("event").asText().equals("eval")) evals.add(n);
    }
    assertEquals(3, evals.size(), "eval at steps 0, 2 and 4: " + evals);
    assertEquals(0.5, evals.get(0).get("exact_match").asDouble(), "half the references match");

    for (Plan plan : List.of(new Plan(2, 1, 1, new int[] {0, 1, 4}), Plan.even(2, 2, 2, 4))) {
      try (LocalRun run = new LocalRun(job("plan", "eval.jsonl"), plan, 1)) {
        List<Evaluator.Result> got = new ArrayList<>();
        got.add(run.evaluate(0));
        for (long s = 0; s < 4; s++) {
          run.step(s);
          if ((s + 1) % 2 == 0) got.add(run.evaluate(s + 1));
        }
        for (int k = 0; k < 3; k++) {
          double want = evals.get(k).get("eval_loss").asDouble();
          double loss = got.get(k).loss();
          System.out.printf(
              "%s, eval at step %d: loss %.6f (one device %.6f), exact match %.3f (one device"
                  + " %.3f)%n",
              plan,
              2 * k,
              loss,
              want,
              got.get(k).exactMatch(),
              evals.get(k).get("exact_match").asDouble());
          assertTrue(Math.abs(loss / want - 1) <= 1e-5, plan + " step " + 2 * k + ": " + loss);
          assertEquals(
              evals.get(k).get("exact_match").asDouble(),
              got.get(k).exactMatch(),
              plan + " step " + 2 * k);
          assertEquals(evals.get(k).get("tokens").asLong(), got.get(k).tokens(), plan + " tokens");
        }
      }
    }
  }

  /**
   * {@code n} alpaca examples of random words; the outputs of the even ones are {@code answers}
   * where given.
   */
  private static void writeAlpaca(Path file, int n, Random r, List<String> answers)
      throws Exception {
    ObjectMapper json = new ObjectMapper();
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < n; i++) {
      ObjectNode o = json.createObjectNode();
      o.put("instruction", "repeat " + words(r, 3));
      String made = words(r, 2);
      o.put("output", answers != null && i % 2 == 0 ? answers.get(i) : made);
      sb.append(json.writeValueAsString(o)).append('\n');
    }
    Files.writeString(file, sb.toString());
  }

  private static String words(Random r, int n) {
    StringBuilder sb = new StringBuilder();
    for (int w = 0; w < n; w++) {
      if (w > 0) sb.append(' ');
      for (int c = 0; c < 3 + r.nextInt(3); c++) sb.append((char) ('a' + r.nextInt(26)));
    }
    return sb.toString();
  }

  private JobConfig job(String name, String eval) throws Exception {
    String text =
        """
        model = "%s"
        data { train = "%s", eval = "%s", format = alpaca, shuffle = false }
        lora { r = 4, alpha = 8, dropout = 0.0, targets = [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }
        optimizer { lr = 1e-2, schedule = constant, warmup-steps = 0, max-grad-norm = 0.05 }
        batch { global = 8, micro = 2, seq-len = 384 }
        precision { mode = fp32 }
        eval { every = 2, max-new-tokens = %d }
        steps = 4
        output = "%s"
        seed = 9
        threads = 1
        """
            .formatted(
                dir.resolve("model"),
                dir.resolve("alpaca.jsonl"),
                dir.resolve(eval),
                MAX_NEW,
                dir.resolve(name));
    return JobConfig.parse(text, Path.of(name + ".conf"));
  }
}
