package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.train.LossScaler;
import dev.troupe.pipeline.train.LrSchedule;
import java.io.OutputStream;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Every rank of a plan on a thread of this process, over a {@link LocalTransport}, driven step by
 * step as the coordinator drives them across nodes: both halves of each step on all ranks, the
 * {@link StepDecision} between them. For tests of the parallel schedules and for the pipeline
 * benchmark; {@code threadsPerRank} sets each rank's libtorch threads.
 */
public final class LocalRun implements AutoCloseable {
  private final JobConfig job;
  private final Plan plan;
  private final LocalTransport transport = new LocalTransport();
  private final List<StageWorker> workers = new ArrayList<>();
  private final List<ExecutorService> threads = new ArrayList<>(); // one per rank
  private LossScaler scaler;
  private List<StageWorker.Report> lastReports = List.of();

  public LocalRun(JobConfig job, Plan plan, int threadsPerRank) throws Exception {
    this.job = job;
    this.plan = plan;
    for (int r = 0; r < plan.worldSize(); r++) {
      String name = "troupe-rank-" + r;
      threads.add(
          Executors.newSingleThreadExecutor(
              task -> {
                Thread t = new Thread(task, name);
                t.setDaemon(true);
                return t;
              }));
    }
    PrintStream quiet = new PrintStream(OutputStream.nullOutputStream());
    List<StageWorker> made =
        onAll(
            rank -> {
              if (threadsPerRank > 0) {
                org.bytedeco.pytorch.global.torch.set_num_threads(threadsPerRank);
              }
              return new StageWorker(job, plan, rank, transport.rank(rank), quiet);
            });
    workers.addAll(made);
    this.scaler = new LossScaler(job.precision().initialLossScale(), 0);
  }

  /** A job of one rank's thread. */
  private interface RankTask<T> {
    T run(int rank) throws Exception;
  }

  private <T> List<T> onAll(RankTask<T> task) throws Exception {
    List<Future<T>> futures = new ArrayList<>();
    for (int r = 0; r < plan.worldSize(); r++) {
      int rank = r;
      futures.add(threads.get(rank).submit(() -> task.run(rank)));
    }
    List<T> out = new ArrayList<>();
    Exception failed = null;
    for (Future<T> f : futures) {
      try {
        out.add(f.get());
      } catch (java.util.concurrent.ExecutionException e) {
        if (failed == null) {
          failed = e.getCause() instanceof Exception c ? c : e;
          transport.abort("rank failed: " + e.getCause());
        }
      }
    }
    if (failed != null) throw failed;
    return out;
  }

  public long totalSteps() {
    return workers.get(0).totalSteps();
  }

  /** Runs 0-based step {@code step} on every rank; returns what was decided. */
  public StepDecision step(long step) throws Exception {
    long total = totalSteps();
    boolean fp16 = workers.get(0).phase(step) == dev.troupe.pipeline.engine.ComputeDtype.FP16;
    double scale = fp16 ? scaler.scale() : 1.0;
    List<StageWorker.Report> reports =
        onAll(rank -> workers.get(rank).forwardBackward(step, scale));
    lastReports = List.copyOf(reports);
    StepDecision d = StepDecision.of(plan, reports, job.optimizer().maxGradNorm());
    double lr =
        job.optimizer().lr()
            * LrSchedule.multiplier(
                job.optimizer().schedule(), step, total, job.optimizer().warmupSteps());
    onAll(
        rank -> {
          workers.get(rank).apply(step, d.clip(), !d.update(), lr);
          return null;
        });
    if (fp16) scaler = scaler.update(d.skipped());
    return d;
  }

  /** The evaluation on the job's eval data after {@code steps} steps, through every rank. */
  public dev.troupe.pipeline.train.Evaluator.Result evaluate(long steps) throws Exception {
    List<StageWorker.EvalReport> reports = onAll(rank -> workers.get(rank).evaluate(steps));
    return StageWorker.EvalReport.combine(plan, reports::get);
  }

  /**
   * The quantization-error check after {@code steps} steps through every rank, decided as the
   * coordinator's driver decides it, with {@code state} (the driver's; updated).
   */
  public dev.troupe.pipeline.train.QuantCheck.Report quantCheck(
      long steps, dev.troupe.pipeline.quant.QuantState state) throws Exception {
    List<PipelineQuantCheck.Part> measured = onAll(rank -> workers.get(rank).quantMeasure(steps));
    var layers = PipelineQuantCheck.decide(plan, measured::get, state, job.quantization().policy());
    var decided = state.copy();
    List<PipelineQuantCheck.Part> applied =
        onAll(rank -> workers.get(rank).quantApply(steps, decided));
    return PipelineQuantCheck.report(plan, layers, measured::get, applied::get);
  }

  /** Every rank's report of the last step, in rank order. */
  public List<StageWorker.Report> lastReports() {
    return lastReports;
  }

  /** The whole adapter, gathered from replica 0's first shard of every stage. */
  public SortedMap<String, TensorData> adapterTensors() {
    SortedMap<String, TensorData> all = new TreeMap<>();
    for (int s = 0; s < plan.pp(); s++)
      all.putAll(workers.get(plan.rankOf(s, 0, 0)).adapterTensors());
    return all;
  }

  @Override
  public void close() throws Exception {
    try {
      onAll(
          rank -> {
            workers.get(rank).close();
            return null;
          });
    } finally {
      threads.forEach(ExecutorService::shutdownNow);
    }
  }
}
