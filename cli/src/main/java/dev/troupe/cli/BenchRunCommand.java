package dev.troupe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.pipeline.bench.BenchMode;
import dev.troupe.pipeline.bench.BenchRun;
import dev.troupe.pipeline.engine.BlasLibrary;
import dev.troupe.pipeline.engine.BlasThreads;
import dev.troupe.pipeline.engine.NativeHeap;
import dev.troupe.pipeline.model.CausalLm;
import java.io.PrintStream;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * {@code troupe bench-run}: one benchmark configuration in this JVM, progress on stderr and one
 * JSON line on stdout. {@code troupe bench} starts it once per configuration in a fresh JVM.
 */
final class BenchRunCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Args args =
        Args.parse(
            "bench-run",
            argv,
            Set.of("model", "mode", "seq", "batch", "steps", "warmup", "threads", "seed"),
            Set.of("checkpointing"));
    BenchMode mode;
    try {
      mode = BenchMode.parse(args.require("mode"));
    } catch (IllegalArgumentException e) {
      throw new UsageException("bench-run: --mode: " + e.getMessage());
    }
    BenchRun.Settings s =
        new BenchRun.Settings(
            args.path("model"),
            mode,
            args.intValue("seq", 256, 2),
            args.intValue("batch", 4, 1),
            args.intValue("steps", 8, 1),
            args.intValue("warmup", 2, 0),
            // all cores by default, as troupe bench: libtorch's own default counts cpuinfo's
            // physical cores, 1 on some 2-core VMs
            args.intValue("threads", Runtime.getRuntime().availableProcessors(), 1),
            args.longValue("seed", 0),
            args.has("checkpointing"));
    BenchRun.Result r = BenchRun.run(s, System.err);
    out.println(new ObjectMapper().writeValueAsString(json(r, s)));
    return 0;
  }

  /**
   * libgomp's wait as this process's environment set it: "ACTIVE/30000", "PASSIVE/-"; "-" for what
   * is unset. The peer reports the same field.
   */
  static String ompWait() {
    String policy = System.getenv("OMP_WAIT_POLICY");
    String spins = System.getenv("GOMP_SPINCOUNT");
    return (policy == null || policy.isEmpty() ? "-" : policy)
        + "/"
        + (spins == null || spins.isEmpty() ? "-" : spins);
  }

  static Map<String, Object> json(BenchRun.Result r, BenchRun.Settings s) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("impl", "troupe");
    m.put("mode", r.mode().label());
    m.put("seq", s.seq());
    m.put("batch", s.batch());
    m.put("threads", s.threads());
    m.put("steps", s.steps());
    m.put("tokens_per_s", r.tokensPerS());
    m.put("median_step_s", r.medianStepS());
    m.put("step_s", r.stepS());
    m.put("peak_rss_mib", r.peakRssMib());
    m.put("allocator", NativeHeap.allocator());
    m.put("openblas_thread_timeout", BlasThreads.spinTimeoutExponent());
    m.put("blas", BlasLibrary.serving());
    m.put("fp32_products", CausalLm.fp32Products());
    m.put("omp_wait", ompWait());
    m.put("loss_first", r.lossFirst());
    m.put("loss_last", r.lossLast());
    m.put("eval_loss", r.evalLoss());
    m.put("params_trainable", r.trainable());
    m.put("skipped_steps", r.skipped());
    m.put("checkpointing", s.checkpointing() && !r.mode().full());
    return m;
  }
}
