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
 * Native memory is released every step: the resident set of a 1000-step run on the tiny model is
 * the same (within 5%) around step 100 and around step 1000 (medians of 50 steps each).
 *
 * <p>The process is set up so that only the training's own memory can move: the JVM heap is fixed
 * and touched up front (-Xms = -Xmx, AlwaysPreTouch), the native heap is trimmed every second (as
 * bin/troupe does every 5 s), and the JIT stops at C1. Measured without that last setting, the C2
 * compiler takes about 25 MiB once, always near step 757 of this job, and part of it stays resident
 * (+5% at step 1000); with C1 only the same run stays within 1%, and JavaCPP's count of live native
 * objects is constant throughout. A leak per step would show either way.
 */
class TrainingMemoryTest {
  @TempDir Path dir;

  @Test
  void residentMemoryStaysFlat() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    Path job =
        TrainingJobs.job(
            dir,
            "long",
            "steps = 1000\nprecision { mode = bf16, fp32-warmup-steps = 50 }\n"
                + "checkpoint { every = 250, keep = 1 }\nlora.dropout = 0.1");
    Process p =
        TrainingJobs.start(
            job,
            dir.resolve("long.log"),
            "-Xms192m",
            "-Xmx192m",
            "-XX:+AlwaysPreTouch",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UnlockExperimentalVMOptions",
            "-XX:TrimNativeHeapInterval=1000");
    assertTrue(
        p.waitFor(600, TimeUnit.SECONDS) && p.exitValue() == 0,
        Files.readString(dir.resolve("long.log")));
    List<JsonNode> steps = TrainingJobs.steps(dir.resolve("long/metrics.jsonl"));
    assertEquals(1000, steps.size());
    long at100 = median(steps.subList(99, 149));
    long at1000 = median(steps.subList(950, 1000));
    System.out.printf(
        "resident memory (median of 50 steps): around step 100 %.1f MiB, around step 1000 %.1f MiB"
            + " (%+.2f%%)%n",
        at100 / 1048576.0, at1000 / 1048576.0, 100.0 * (at1000 - at100) / at100);
    assertTrue(
        Math.abs(at1000 - at100) <= 0.05 * at100,
        "resident memory went from " + at100 + " to " + at1000);
  }

  static long median(List<JsonNode> steps) {
    long[] m = steps.stream().mapToLong(s -> s.get("mem_bytes").asLong()).sorted().toArray();
    return m[m.length / 2];
  }
}
