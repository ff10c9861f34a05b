package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.cli.Main;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MergeAndEvalTest {
  @TempDir Path dir;

  static String troupe(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int status =
        Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err));
    assertEquals(0, status, err.toString());
    return out.toString(StandardCharsets.UTF_8);
  }

  @Test
  void mergedModelScoresLikeModelPlusAdapter() throws Exception {
    ReferenceCase c =
        ReferenceCase.all().stream().filter(ReferenceCase::adapter).findFirst().orElseThrow();
    c.write(dir);
    Path merged = dir.resolve("merged");
    String said =
        troupe(
            "merge",
            "--model",
            c.modelDir(dir).toString(),
            "--adapter",
            c.adapterDir(dir).toString(),
            "--out",
            merged.toString());
    assertTrue(said.contains("merged 4 adapted layers"), said);
    troupe(
        "score",
        "--model",
        c.modelDir(dir).toString(),
        "--adapter",
        c.adapterDir(dir).toString(),
        "--ids",
        ReferenceCase.IDS,
        "--out",
        dir.resolve("a.safetensors").toString());
    troupe(
        "score",
        "--model",
        merged.toString(),
        "--ids",
        ReferenceCase.IDS,
        "--out",
        dir.resolve("b.safetensors").toString());
    troupe(
        "score",
        "--model",
        c.modelDir(dir).toString(),
        "--ids",
        ReferenceCase.IDS,
        "--out",
        dir.resolve("base.safetensors").toString());
    Logits withAdapter = Logits.read(dir.resolve("a.safetensors"));
    Logits mergedLogits = Logits.read(dir.resolve("b.safetensors"));
    float diff = withAdapter.maxAbsDiff(mergedLogits);
    float adapterEffect = withAdapter.maxAbsDiff(Logits.read(dir.resolve("base.safetensors")));
    System.out.printf(
        "merged vs model+adapter: max |difference| %.3g (the adapter moves logits by %.3g)%n",
        diff, adapterEffect);
    assertTrue(diff <= 1e-5f * withAdapter.maxAbs(), "merged logits differ by " + diff);
    assertTrue(adapterEffect > 1000 * diff);
  }

  @Test
  void evalCommandAgreesWithTheTrainersEval() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    Files.copy(dir.resolve("train.jsonl"), dir.resolve("eval.jsonl"));
    troupe(
        "train",
        TrainingJobs.job(
                dir,
                "one",
                "steps = 1\ndata.eval = \""
                    + dir.resolve("eval.jsonl")
                    + "\"\nprecision.mode = fp32")
            .toString());
    double trainerEval = Double.NaN;
    for (String line : Files.readAllLines(dir.resolve("one/metrics.jsonl"))) {
      JsonNode n = new ObjectMapper().readTree(line);
      if (n.path("event").asText().equals("eval") && n.get("step").asInt() == 0)
        trainerEval = n.get("eval_loss").asDouble();
    }
    String said =
        troupe(
            "eval",
            "--model",
            dir.resolve("model").toString(),
            "--data",
            dir.resolve("eval.jsonl").toString(),
            "--format",
            "tokens",
            "--seq-len",
            "24",
            "--batch",
            "4",
            "--compare-adapter",
            dir.resolve("one/adapter").toString());
    Matcher m = Pattern.compile("40 examples, eval loss ([0-9.]+), perplexity").matcher(said);
    assertTrue(m.find(), said);
    assertEquals(trainerEval, Double.parseDouble(m.group(1)), 1e-4, said);
    assertTrue(said.contains("eval loss difference (first - second): "), said);
  }
}
