package dev.troupe.coordinator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.device.RankProtocol;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.dist.StageWorker;
import dev.troupe.pipeline.job.JobConfig;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The driver's side of a step: precision by step, loss scaling, learning rate, metrics line. */
class StepControlTest {
  // pp = 2: the loss comes from the last stage, the gradient norm from both
  private static final Plan PLAN = Plan.even(2, 1, 1, 4);

  private static JobConfig job(String precision) throws Exception {
    return JobConfig.parse(
        """
        model = "m"
        data { train = "t.jsonl", format = tokens }
        batch { global = 4, micro = 2, seq-len = 8 }
        output = "out"
        steps = 10
        optimizer { lr = 0.01, schedule = linear, warmup-steps = 2, max-grad-norm = 1.0 }
        precision { %s }
        """
            .formatted(precision),
        Path.of("job.conf"));
  }

  private static List<StageWorker.Report> reports(double squares0, double squares1) {
    return List.of(
        new StageWorker.Report(0, 0, 0, 0, 0, 0.0, 32, squares0, 0.1, 0.0),
        new StageWorker.Report(0, 1, 1, 0, 0, 64.0, 32, squares1, 0.1, 0.0));
  }

  @Test
  void fp16StepsAfterTheWarmUpAreScaledAndAnOverflowHalvesTheScale() throws Exception {
    StepControl c =
        new StepControl(job("mode = fp16, fp32-warmup-steps = 2, initial-loss-scale = 1024"), PLAN);
    // step -> precision and the scale its backward uses
    Object[][] table = {{0L, "fp32", 1.0}, {1L, "fp32", 1.0}, {2L, "fp16", 1024.0}};
    for (Object[] row : table) {
      assertEquals(row[1], c.precision((Long) row[0]), "precision of step " + row[0]);
      assertEquals((Double) row[2], c.begin((Long) row[0]), "scale of step " + row[0]);
    }
    RankProtocol.Apply apply = c.decide("r", 2, 10, reports(Double.POSITIVE_INFINITY, 1.0));
    assertFalse(apply.update(), "an overflow skips the update");
    assertEquals(512.0, apply.lossScale(), "and halves the scale the ranks go on with");
    StepControl.Done done = c.done(2);
    assertEquals(1024.0, done.line().get("loss_scale"), "the line shows the step's own scale");
    assertEquals(true, done.line().get("skipped"));
    assertEquals(512.0, c.scaler().scale(), "the driver's scaler moved on with the ranks'");
  }

  @Test
  void theDecisionClipsTheGlobalNormAndFollowsTheSchedule() throws Exception {
    StepControl c = new StepControl(job("mode = bf16, fp32-warmup-steps = 0"), PLAN);
    assertEquals(1.0, c.begin(1), "bf16 needs no loss scale");
    // global norm sqrt(3 + 1) = 2 over max-grad-norm 1: clip about 1/2; linear warm-up: 1/2 of lr
    RankProtocol.Apply apply = c.decide("r", 1, 10, reports(3.0, 1.0));
    assertTrue(apply.update());
    assertEquals(0.5, apply.clip(), 1e-6);
    assertEquals(0.005, apply.lr(), 1e-12);
    assertEquals("r", apply.runId());
    Map<String, Object> line = c.done(1).line();
    assertEquals(2L, line.get("step"), "the line counts steps from 1");
    assertEquals(2.0, line.get("loss"), "the last stage's loss sum over its tokens");
    assertEquals(2.0, (Double) line.get("grad_norm"), 1e-12);
    assertEquals("bf16", line.get("precision"));
    assertEquals(PLAN.toString(), line.get("plan"));
  }
}
