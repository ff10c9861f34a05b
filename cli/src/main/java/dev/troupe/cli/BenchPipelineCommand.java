package dev.troupe.cli;

import dev.troupe.pipeline.dist.LocalRun;
import dev.troupe.pipeline.dist.Plan;
import dev.troupe.pipeline.dist.Planner;
import dev.troupe.pipeline.dist.StageWorker;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.job.ParallelSettings;
import dev.troupe.pipeline.model.ModelConfig;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.Set;

/**
 * {@code troupe bench-pipeline}: pipeline parallelism on this machine's cores. The same LoRA job
 * (r=16, alpha 32, q_proj and v_proj, one global batch of {@code --microbatches} microbatches of
 * {@code --micro} sequences) runs as pp=2 over two 1-thread devices (stage boundaries from the
 * planner) and as 1×1×1 on one 2-thread device, both in this process through the stage workers and
 * the in-process transport, their steps alternating. Prints median tokens/s of each, their ratio,
 * and each stage's measured bubble (the share of its step spent waiting for the other stage) beside
 * 1F1B's {@code (p−1)/(m+p−1)}.
 */
final class BenchPipelineCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Args args =
        Args.parse(
            "bench-pipeline",
            argv,
            Set.of(
                "preset",
                "model",
                "models-dir",
                "seq",
                "micro",
                "microbatches",
                "steps",
                "warmup",
                "precision"),
            Set.of());
    Path model = args.has("model") ? args.path("model") : BenchCommand.presetModel(args, out);
    int seq = args.intValue("seq", 256, 2);
    int micro = args.intValue("micro", 1, 1);
    int m = args.intValue("microbatches", 8, 1);
    int steps = args.intValue("steps", 6, 1);
    int warmup = args.intValue("warmup", 1, 0);
    String precision = args.get("precision", "bf16");
    ModelConfig config = ModelConfig.read(model.resolve("config.json"));
    Path work = Files.createTempDirectory("troupe-bench-pipeline");
    Random r = new Random(1);
    StringBuilder data = new StringBuilder();
    for (int i = 0; i < micro * m; i++) {
      long[] ids = new long[seq];
      for (int t = 0; t < seq; t++) ids[t] = 3 + r.nextInt(config.vocabSize() - 3);
      data.append("{\"input_ids\": ").append(Arrays.toString(ids)).append("}\n");
    }
    Files.writeString(work.resolve("train.jsonl"), data);
    String text =
        """
        model = "%s"
        data { train = "%s", format = tokens, shuffle = false }
        lora { r = 16, alpha = 32, dropout = 0.0, targets = [q_proj, v_proj] }
        optimizer { lr = 1e-4 }
        batch { global = %d, micro = %d, seq-len = %d }
        precision { mode = %s, fp32-warmup-steps = 0 }
        steps = %d
        output = "%s"
        """
            .formatted(
                model,
                work.resolve("train.jsonl"),
                micro * m,
                micro,
                seq,
                precision,
                steps + warmup,
                work.resolve("out"));
    JobConfig job = JobConfig.parse(text, Path.of("bench-pipeline.conf"));
    out.printf(
        Locale.ROOT,
        "bench-pipeline: %s, %d layers, seq %d, %d microbatches of %d, %s, %d timed steps after"
            + " %d%n",
        model.getFileName(),
        config.numLayers(),
        seq,
        m,
        micro,
        precision,
        steps,
        warmup);
    // the planner's stage boundaries for two equal 1-thread devices (the head weighs on stage 1)
    List<Planner.Device> two1 =
        List.of(
            new Planner.Device("cpu:0", "local", 16L << 30, 1),
            new Planner.Device("cpu:1", "local", 16L << 30, 1));
    Plan split =
        Planner.plan(Planner.Workload.of(job, config), ParallelSettings.fixed(2, 1, 1), two1)
            .plan();
    out.println("pp=2 stages: " + split);
    List<Double> one = new ArrayList<>();
    List<Double> two = new ArrayList<>();
    List<double[]> bubbles = new ArrayList<>();
    try (LocalRun single = new LocalRun(job, Plan.single(config.numLayers()), 2);
        LocalRun pipeline = new LocalRun(job, split, 1)) {
      for (int s = 0; s < steps + warmup; s++) {
        long t0 = System.nanoTime();
        var d1 = single.step(s);
        double a = d1.tokens() / ((System.nanoTime() - t0) / 1e9);
        t0 = System.nanoTime();
        var d2 = pipeline.step(s);
        double b = d2.tokens() / ((System.nanoTime() - t0) / 1e9);
        String note = s < warmup ? " (warm-up)" : "";
        double[] bubble = new double[4]; // waiting share of stage 0, 1; busy seconds of 0, 1
        for (StageWorker.Report rep : pipeline.lastReports()) {
          bubble[rep.stage()] = rep.waitSeconds() / rep.seconds();
          bubble[2 + rep.stage()] = rep.seconds() - rep.waitSeconds();
        }
        out.printf(
            Locale.ROOT,
            "step %d: 1x1x1 (2 threads) %.0f tokens/s, pp=2 (2 x 1 thread) %.0f tokens/s,"
                + " waiting %.0f%% / %.0f%%%s%n",
            s + 1,
            a,
            b,
            100 * bubble[0],
            100 * bubble[1],
            note);
        if (s >= warmup) {
          one.add(a);
          two.add(b);
          bubbles.add(bubble);
        }
      }
    }
    double a = median(one);
    double b = median(two);
    double formula = 1.0 / (m + 1);
    out.printf(Locale.ROOT, "%nmedian tokens/s: 1x1x1 on one 2-thread device %.0f%n", a);
    out.printf(
        Locale.ROOT, "                 pp=2 on two 1-thread devices %.0f (%.2fx)%n", b, b / a);
    out.printf(
        Locale.ROOT,
        "bubble: stage 0 waits %.0f%%, stage 1 waits %.0f%% of the step (median);"
            + " 1F1B's (p-1)/(m+p-1) = 1/%d = %.0f%%%n",
        100 * median(bubbles.stream().map(x -> x[0]).toList()),
        100 * median(bubbles.stream().map(x -> x[1]).toList()),
        m + 1,
        100 * formula);
    double busy0 = median(bubbles.stream().map(x -> x[2]).toList());
    double busy1 = median(bubbles.stream().map(x -> x[3]).toList());
    out.printf(
        Locale.ROOT,
        "stage compute per step: %.3f s and %.3f s; with equal stages the waiting would be the"
            + " bubble alone, the rest is the imbalance of the slower stage%n",
        busy0,
        busy1);
    return 0;
  }

  private static double median(List<Double> xs) {
    List<Double> s = new ArrayList<>(xs);
    s.sort(null);
    int n = s.size();
    return n == 0 ? Double.NaN : n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2;
  }
}
