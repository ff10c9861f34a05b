package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.train.StateCopy;
import dev.troupe.pipeline.train.Trainer;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The copies of the state a run on one device keeps after every step ({@link Trainer.StepObserver}
 * {@code keep}) continue the run exactly: a second run started from the copy after step 5, with no
 * checkpoint anywhere, repeats steps 6 to 12 of the first to the bit (shuffled data, dropout, and a
 * NF4 base whose check at step 0 promoted every layer to INT8: the copy carries the formats, and a
 * run that read NF4 again would train other losses). A copy that lacks a tensor is refused, naming
 * it.
 */
class StateCopyTest {
  @TempDir Path dir;

  private static final String EXTRA =
      """
      steps = 12
      checkpoint { every = 1000 }
      quantization { base = nf4, check-every = 4, promote-above = 0.02 }
      """;

  /**
   * Trains {@code job}, from {@code from} if given, and returns the copies kept after each step.
   */
  private static List<StateCopy> train(Path job, StateCopy from) throws IOException {
    List<StateCopy> copies = new ArrayList<>();
    Trainer t =
        new Trainer(JobConfig.load(job), new PrintStream(OutputStream.nullOutputStream()), false)
            .observe(
                new Trainer.StepObserver() {
                  @Override
                  public void stepDone(long step, long total, double loss, double tokensPerS) {}

                  @Override
                  public boolean stopRequested() {
                    return false;
                  }

                  @Override
                  public boolean keepsCopies() {
                    return true;
                  }

                  @Override
                  public void keep(StateCopy copy) {
                    copies.add(copy);
                  }
                });
    if (from != null) t.startFrom(from);
    t.run();
    assertEquals(from == null ? "start" : "copies", t.restoredFrom());
    return copies;
  }

  @Test
  void aRunStartedFromACopyContinuesExactly() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    List<StateCopy> first = train(TrainingJobs.job(dir, "first", EXTRA), null);
    assertEquals(12, first.size());
    StateCopy five = first.get(4);
    assertEquals(5, five.step());
    assertTrue(five.quantization().contains("\"format\""), five.quantization());
    assertTrue(five.tensors().keySet().stream().anyMatch(k -> k.startsWith("exp_avg_sq.")));

    List<StateCopy> second = train(TrainingJobs.job(dir, "second", EXTRA), five);
    assertEquals(7, second.size());
    List<JsonNode> a = TrainingJobs.steps(dir.resolve("first/metrics.jsonl"));
    List<JsonNode> b = TrainingJobs.steps(dir.resolve("second/metrics.jsonl"));
    assertEquals(7, b.size());
    for (int i = 0; i < 7; i++) {
      assertEquals(a.get(i + 5).get("step").asLong(), b.get(i).get("step").asLong());
      assertEquals(a.get(i + 5).get("loss").asDouble(), b.get(i).get("loss").asDouble(), 0.0);
    }
    StateCopy x = first.get(11);
    StateCopy y = second.get(6);
    assertEquals(x.tensors().keySet(), y.tensors().keySet());
    for (String k : x.tensors().keySet()) {
      assertEquals(x.tensors().get(k).bytes(), y.tensors().get(k).bytes(), k);
    }
    assertEquals(x.quantization(), y.quantization());
  }

  @Test
  void aCopyWithoutATensorIsRefusedByName() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    String extra = "steps = 2\ncheckpoint { every = 1000 }";
    StateCopy c = train(TrainingJobs.job(dir, "first", extra), null).get(0);
    TreeMap<String, TensorData> fewer = new TreeMap<>(c.tensors());
    String gone = fewer.lastKey();
    fewer.remove(gone);
    StateCopy broken =
        new StateCopy(
            c.step(), fewer, c.optimizerStep(), c.lossScale(), c.growthTracker(), c.quantization());
    IOException e =
        assertThrows(
            IOException.class, () -> train(TrainingJobs.job(dir, "second", extra), broken));
    assertTrue(e.getMessage().contains(gone), e.getMessage());
    assertTrue(e.getMessage().contains("after step 1"), e.getMessage());
  }
}
