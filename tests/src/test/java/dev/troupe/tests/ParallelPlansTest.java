package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.troupe.pipeline.dist.LocalRun;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.dist.StepDecision;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.train.Trainer;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SortedMap;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The same job trained on one device and split by every kind of plan, its ranks on threads of this
 * process: per-step losses agree within 1e-4 relative and the final adapters within 1e-4 (absolute,
 * on values of order 0.1), against {@link Trainer} on one device. The cross-process version of this
 * check runs the same plans through real nodes ({@code DistributedJobsTest}).
 */
class ParallelPlansTest {
  @TempDir static Path dir;
  static List<Double> reference;
  static SortedMap<String, TensorData> referenceAdapter;
  static final int STEPS = 4;

  /** A 4-layer model with 2 kv heads, so that pp up to 4 and tp=2 apply; tokens data. */
  static void writeModelAndData(Path dir) throws Exception {
    TrainingJobs.writeModelAndData(dir, config(128));
  }

  /** That model's config, with room for {@code positions} positions. */
  static ModelConfig config(int positions) {
    return new ModelConfig(
        "llama",
        300,
        64,
        96,
        4,
        4,
        2,
        16,
        1e-6,
        10000.0,
        false,
        false,
        false,
        false,
        0,
        positions,
        List.of(2L),
        1);
  }

  static JobConfig job(String name) throws Exception {
    return job(name, "");
  }

  /** The job, with {@code extra} appended (HOCON: its keys win). */
  static JobConfig job(String name, String extra) throws Exception {
    return job(dir, name, extra);
  }

  /** The job on the model and data in {@code dir}, its output there too. */
  static JobConfig job(Path dir, String name, String extra) throws Exception {
    String text =
        """
        model = "%s"
        data { train = "%s", format = tokens, shuffle = false }
        lora { r = 4, alpha = 8, dropout = 0.0, targets = [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }
        optimizer { lr = 1e-2, schedule = constant, warmup-steps = 0, max-grad-norm = 0.05 }
        batch { global = 8, micro = 2, seq-len = 24 }
        precision { mode = fp32 }
        steps = %d
        output = "%s"
        seed = 9
        threads = 1
        %s
        """
            .formatted(
                dir.resolve("model"), dir.resolve("train.jsonl"), STEPS, dir.resolve(name), extra);
    return JobConfig.parse(text, Path.of(name + ".conf"));
  }

  @BeforeAll
  static void trainOnOneDevice() throws Exception {
    writeModelAndData(dir);
    JobConfig job = job("single");
    new Trainer(job, new PrintStream(OutputStream.nullOutputStream()), false).run();
    reference = losses(dir.resolve("single"));
    referenceAdapter = adapter(dir.resolve("single"));
  }

  private static List<Double> losses(Path run) throws Exception {
    List<Double> out = new ArrayList<>();
    for (JsonNode n : TrainingJobs.steps(run.resolve("metrics.jsonl"))) {
      out.add(n.get("loss").asDouble());
    }
    assertEquals(STEPS, out.size());
    return out;
  }

  private static SortedMap<String, TensorData> adapter(Path run) throws Exception {
    SortedMap<String, TensorData> out = new java.util.TreeMap<>();
    try (var adapter = dev.troupe.pipeline.lora.PeftAdapter.open(run.resolve("adapter"))) {
      var w = adapter.weights();
      for (String k : w.names()) {
        ByteBuffer copy = ByteBuffer.allocate(w.data(k).remaining());
        copy.put(w.data(k)).flip();
        out.put(k, new TensorData(w.info(k).dtype(), w.info(k).shape(), copy));
      }
    }
    return out;
  }

  private static void check(Plan plan) throws Exception {
    check(plan, job("plan"), reference, referenceAdapter);
  }

  private static void check(
      Plan plan,
      JobConfig job,
      List<Double> reference,
      SortedMap<String, TensorData> referenceAdapter)
      throws Exception {
    List<Double> losses = new ArrayList<>();
    SortedMap<String, TensorData> adapter;
    try (LocalRun run = new LocalRun(job, plan, 1)) {
      for (long s = 0; s < run.totalSteps(); s++) {
        StepDecision d = run.step(s);
        losses.add(d.loss());
      }
      adapter = run.adapterTensors();
    }
    for (int i = 0; i < STEPS; i++) {
      double want = reference.get(i);
      double got = losses.get(i);
      assertTrue(
          Math.abs(got - want) <= 1e-4 * Math.abs(want),
          plan + ": step " + (i + 1) + " loss " + got + " vs one device " + want);
    }
    assertEquals(referenceAdapter.keySet(), adapter.keySet(), plan + ": adapter tensors");
    for (String k : adapter.keySet()) {
      float[] want = floats(referenceAdapter.get(k));
      float[] got = floats(adapter.get(k));
      assertEquals(want.length, got.length, k);
      double worst = 0;
      for (int i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(want[i] - got[i]));
      assertTrue(worst <= 1e-4, plan + ": " + k + " differs by " + worst);
    }
  }

  private static float[] floats(TensorData t) {
    ByteBuffer b = t.bytes().duplicate().order(ByteOrder.LITTLE_ENDIAN);
    float[] out = new float[b.remaining() / 4];
    b.asFloatBuffer().get(out);
    return out;
  }

  @Test
  void oneRank() throws Exception {
    check(Plan.single(4));
  }

  @Test
  void pipelineOfTwo() throws Exception {
    check(new Plan(2, 1, 1, new int[] {0, 1, 4}));
  }

  @Test
  void tensorParallelOfTwo() throws Exception {
    check(Plan.even(1, 2, 1, 4));
  }

  @Test
  void dataParallelOfTwo() throws Exception {
    check(Plan.even(1, 1, 2, 4));
  }

  @Test
  void pipelineOfTwoTimesDataParallelOfTwo() throws Exception {
    check(Plan.even(2, 1, 2, 4));
  }

  @Test
  void allThree() throws Exception {
    check(Plan.even(2, 2, 2, 4));
  }

  /**
   * Dropout on: every rank draws the masks one device draws (each rank thread has its own
   * generator, seeded per microbatch and layer; a row-parallel shard applies its part of the whole
   * layer's mask), with and without gradient checkpointing (each layer computed again in the
   * backward draws the same masks), so the plans give the steps of one device that keeps every
   * activation.
   */
  @Test
  void dropoutWithAndWithoutGradientCheckpointing() throws Exception {
    String dropout = "lora.dropout = 0.1\n";
    new Trainer(
            job("single-dropout", dropout), new PrintStream(OutputStream.nullOutputStream()), false)
        .run();
    List<Double> want = losses(dir.resolve("single-dropout"));
    SortedMap<String, TensorData> wantAdapter = adapter(dir.resolve("single-dropout"));
    assertTrue(
        Math.abs(want.get(STEPS - 1) / reference.get(STEPS - 1) - 1) > 1e-4,
        "dropout changes the losses: " + want + " vs " + reference);
    check(Plan.even(2, 2, 2, 4), job("plan-dropout", dropout), want, wantAdapter);
    JobConfig job = job("plan-gc", dropout + "gradient-checkpointing = true\n");
    assertTrue(job.gradientCheckpointing());
    check(new Plan(2, 1, 1, new int[] {0, 1, 4}), job, want, wantAdapter);
    check(Plan.even(2, 2, 2, 4), job, want, wantAdapter);
  }
}
