package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A training process killed with SIGKILL in the middle of a run and started again continues from
 * its last checkpoint and produces the same per-step losses as a run that was never interrupted:
 * bf16 after an FP32 warm-up, LoRA dropout 0.1, shuffled data, a cosine schedule with warm-up.
 */
class ResumeAfterKillTest {
  static final int STEPS = 16;
  @TempDir Path dir;

  @Test
  void killedRunResumesOnTheSameTrajectory() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    String common =
        "steps = %d%nprecision { mode = bf16, fp32-warmup-steps = 4 }%ncheckpoint { every = 3, keep = 2 }%n"
            .formatted(STEPS);
    Path straight = TrainingJobs.job(dir, "straight", common);
    Path killed = TrainingJobs.job(dir, "killed", common);

    Process p = TrainingJobs.start(straight, dir.resolve("straight.log"));
    assertTrue(
        p.waitFor(300, TimeUnit.SECONDS) && p.exitValue() == 0,
        Files.readString(dir.resolve("straight.log")));
    List<JsonNode> want = TrainingJobs.steps(dir.resolve("straight/metrics.jsonl"));
    assertEquals(STEPS, want.size());

    // Kill once step 8 is logged: checkpoints exist for steps 3 and 6, step 7 and 8 are lost.
    Process first = TrainingJobs.start(killed, dir.resolve("killed-1.log"));
    Path metrics = dir.resolve("killed/metrics.jsonl");
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(300);
    while (TrainingJobs.steps(metrics).size() < 8
        && first.isAlive()
        && System.nanoTime() < deadline) {
      Thread.sleep(20);
    }
    first.destroyForcibly(); // SIGKILL on Linux
    first.waitFor(60, TimeUnit.SECONDS);
    int loggedBeforeKill = TrainingJobs.steps(metrics).size();
    assertTrue(
        loggedBeforeKill >= 8 && loggedBeforeKill < STEPS,
        "killed after " + loggedBeforeKill + " steps");

    Process second = TrainingJobs.start(killed, dir.resolve("killed-2.log"));
    assertTrue(
        second.waitFor(300, TimeUnit.SECONDS) && second.exitValue() == 0,
        Files.readString(dir.resolve("killed-2.log")));
    String log = Files.readString(dir.resolve("killed-2.log"));
    assertTrue(log.contains("resuming from"), log);

    List<JsonNode> got = TrainingJobs.steps(metrics);
    assertEquals(STEPS, got.size(), "every step exactly once in metrics.jsonl");
    double worst = 0;
    for (int i = 0; i < STEPS; i++) {
      assertEquals(i + 1, got.get(i).get("step").asInt());
      assertEquals(want.get(i).get("precision").asText(), got.get(i).get("precision").asText());
      double a = want.get(i).get("loss").asDouble();
      worst = Math.max(worst, Math.abs(a - got.get(i).get("loss").asDouble()) / a);
    }
    System.out.printf(
        "killed after %d logged steps, resumed: max relative loss difference %.3g over %d steps%n",
        loggedBeforeKill, worst, STEPS);
    assertTrue(worst <= 1e-6, "losses after the resume differ by " + worst);
  }
}
