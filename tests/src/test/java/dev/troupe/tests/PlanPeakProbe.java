package dev.troupe.tests;

import dev.troupe.pipeline.dist.LocalRun;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.train.ResidentMemory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Run in a JVM of its own: {@code PlanPeakProbe JOB.conf PP} trains the job's steps as pp = PP
 * (even stages, its ranks on threads of this process) and prints {@code losses=…} and {@code
 * peak_mem_bytes=…} (the process's peak resident memory).
 */
public final class PlanPeakProbe {
  private PlanPeakProbe() {}

  public static void main(String[] args) throws Exception {
    JobConfig job = JobConfig.load(Path.of(args[0]));
    int pp = Integer.parseInt(args[1]);
    List<Double> losses = new ArrayList<>();
    try (LocalRun run = new LocalRun(job, Plan.even(pp, 1, 1, layers(job)), 1)) {
      for (long s = 0; s < run.totalSteps(); s++) losses.add(run.step(s).loss());
    }
    System.out.println("losses=" + losses);
    System.out.println("peak_mem_bytes=" + ResidentMemory.peakBytes());
  }

  private static int layers(JobConfig job) throws Exception {
    return dev.troupe.pipeline.model.ModelConfig.read(job.model().resolve("config.json"))
        .numLayers();
  }
}
