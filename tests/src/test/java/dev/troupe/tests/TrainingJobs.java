package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.model.RandomInit;
import dev.troupe.pipeline.train.Trainer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Tiny training jobs for tests: a model, tokens data, a job file, and troupe train as a process.
 */
final class TrainingJobs {
  private TrainingJobs() {}

  /** A tiny model and 40 random token sequences under {@code dir}. */
  static void writeModelAndData(Path dir) throws IOException {
    writeModelAndData(dir, ReferenceCase.config("llama", 2, false, false, false, 0));
  }

  /** A model of config {@code c} and 40 random token sequences under {@code dir}. */
  static void writeModelAndData(Path dir, ModelConfig c) throws IOException {
    new RandomInit(c).seed(3).std(0.1).write(dir.resolve("model"));
    Random r = new Random(5);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 40; i++) {
      List<String> ids = new ArrayList<>();
      for (int t = 0, n = 8 + r.nextInt(16); t < n; t++)
        ids.add(Integer.toString(3 + r.nextInt(290)));
      sb.append("{\"input_ids\": [").append(String.join(",", ids)).append("]}\n");
    }
    Files.writeString(dir.resolve("train.jsonl"), sb.toString());
  }

  /** A job file over that model and data; {@code extra} is appended (HOCON overrides). */
  static Path job(Path dir, String name, String extra) throws IOException {
    Path job = dir.resolve(name + ".conf");
    Files.writeString(
        job,
        """
        model = "%s"
        data { train = "%s", format = tokens, shuffle = true }
        lora { r = 4, alpha = 8, dropout = 0.1, targets = [q_proj, v_proj, down_proj] }
        optimizer { lr = 5e-3, schedule = cosine, warmup-steps = 3 }
        batch { global = 8, micro = 4, seq-len = 24 }
        output = "%s"
        seed = 9
        threads = 1
        %s
        """
            .formatted(dir.resolve("model"), dir.resolve("train.jsonl"), dir.resolve(name), extra));
    return job;
  }

  /**
   * A job whose every step is reproducible to the bit on one device (fp32, no shuffling, dropout
   * 0), for comparing plans and recoveries; 4 steps unless {@code extra} (HOCON appended, so its
   * keys win) says otherwise.
   */
  static Path exactJob(Path dir, String name, String extra) throws IOException {
    Path job = dir.resolve(name + ".conf");
    Files.writeString(
        job,
        """
        model = "%s"
        data { train = "%s", format = tokens, shuffle = false }
        lora { r = 4, alpha = 8, dropout = 0.0, targets = [q_proj, v_proj, o_proj, down_proj] }
        optimizer { lr = 1e-2, schedule = constant, max-grad-norm = 0.05 }
        batch { global = 8, micro = 2, seq-len = 24 }
        precision { mode = fp32 }
        steps = 4
        output = "%s"
        seed = 9
        threads = 1
        %s
        """
            .formatted(dir.resolve("model"), dir.resolve("train.jsonl"), dir.resolve(name), extra));
    return job;
  }

  /** Starts {@code troupe train JOB} in its own JVM with the test classpath. */
  static Process start(Path job, Path log, String... jvmOptions) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.add("--enable-native-access=ALL-UNNAMED");
    cmd.addAll(List.of(jvmOptions));
    cmd.addAll(
        List.of(
            "-cp",
            System.getProperty("java.class.path"),
            "dev.troupe.cli.Main",
            "train",
            job.toString()));
    return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
  }

  /**
   * Checks a cluster run of {@code total} steps (output folder {@code run}) against {@code direct},
   * the same job trained in one go on one device here: every step once in metrics.jsonl, losses
   * within 1e-4 relative, every adapter tensor within 1e-4 of the other's norm. Prints the worst
   * differences.
   */
  static void matchesOneDevice(Path run, Path direct, int total) throws Exception {
    List<JsonNode> steps = steps(run.resolve("metrics.jsonl"));
    assertEquals(total, steps.size(), "every step once");
    for (int i = 0; i < steps.size(); i++) assertEquals(i + 1, steps.get(i).get("step").asInt());
    new Trainer(JobConfig.load(direct), new PrintStream(new ByteArrayOutputStream()), false).run();
    JobConfig d = JobConfig.load(direct);
    List<JsonNode> expected = steps(d.output().resolve("metrics.jsonl"));
    double worst = 0;
    for (int i = 0; i < total; i++) {
      double a = steps.get(i).get("loss").asDouble();
      double b = expected.get(i).get("loss").asDouble();
      worst = Math.max(worst, Math.abs(a / b - 1));
    }
    System.out.printf(
        "losses against one device in one go: worst relative difference %.2e%n", worst);
    assertTrue(worst <= 1e-4, "losses differ by " + worst);
    var a = DistributedJobsTest.adapter(run.resolve("adapter"));
    var b = DistributedJobsTest.adapter(d.output().resolve("adapter"));
    assertEquals(b.keySet(), a.keySet());
    double worstTensor = 0;
    for (String k : a.keySet()) {
      double num = 0;
      double den = 0;
      for (int i = 0; i < a.get(k).length; i++) {
        double diff = a.get(k)[i] - b.get(k)[i];
        num += diff * diff;
        den += (double) b.get(k)[i] * b.get(k)[i];
      }
      worstTensor = Math.max(worstTensor, Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30));
    }
    System.out.printf(
        "adapter against one device: worst relative difference of a tensor %.2e%n", worstTensor);
    assertTrue(worstTensor <= 1e-4, "adapters differ by " + worstTensor);
  }

  /** The last step number in a metrics.jsonl (0 if none yet). */
  static long lastStep(Path metrics) throws IOException {
    List<JsonNode> steps = steps(metrics);
    return steps.isEmpty() ? 0 : steps.getLast().path("step").asLong();
  }

  /** The per-step lines of a job's metrics.jsonl (eval lines left out). */
  static List<JsonNode> steps(Path metrics) throws IOException {
    List<JsonNode> out = new ArrayList<>();
    if (!Files.exists(metrics)) return out;
    for (String line : Files.readAllLines(metrics)) {
      if (line.isBlank()) continue;
      JsonNode n;
      try {
        n = new ObjectMapper().readTree(line);
      } catch (IOException e) {
        continue; // a line being written right now
      }
      if (!n.has("event")) out.add(n);
    }
    return out;
  }
}
