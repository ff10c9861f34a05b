package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.job.ParallelSettings;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.quant.QuantizedTensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Chooses how to split a LoRA job over devices: pipeline stages, tensor shards and data-parallel
 * replicas ({@link Plan}), with stage boundaries balanced by a rough cost model. Pure arithmetic:
 * no actors, no libtorch.
 *
 * <p>The cost model is {@link PlanCost}.
 */
public final class Planner {
  /** Relative difference of estimated step times below which two plans tie. */
  private static final double TIE = 1e-9;

  private Planner() {}

  /**
   * A device a rank can run on.
   *
   * @param id its name, unique in the cluster, e.g. {@code cpu:0}
   * @param node the address of its node; devices of one node talk cheaply
   * @param memoryBytes the memory the plan may use, before {@link PlanCost#USABLE_MEMORY}
   * @param threads its compute threads, the speed of the cost model
   */
  public record Device(String id, String node, long memoryBytes, int threads) {
    public Device {
      Objects.requireNonNull(id, "id");
      Objects.requireNonNull(node, "node");
      if (memoryBytes <= 0 || threads < 1) {
        throw new IllegalArgumentException(
            "device "
                + id
                + ": memory "
                + memoryBytes
                + " and threads "
                + threads
                + " must be > 0");
      }
    }

    /** {@code id@node}. */
    public String label() {
      return id + "@" + node;
    }
  }

  /**
   * What is trained: the model, the batch and how its weights are held.
   *
   * @param seqLen tokens per sequence
   * @param microBatch sequences per forward/backward pass of one replica
   * @param globalBatch sequences per optimizer step, over all replicas
   * @param loraTargets the adapted linear layers of every decoder layer
   * @param linearBytesPerParam bytes per frozen decoder linear weight: the compute dtype's, 1 for
   *     INT8, 0.5 plus an FP32 scale per group of 64 for INT4 and NF4
   * @param dtypeBytes bytes of the compute dtype, for the embedding, norms, head, activations and
   *     messages: 4 for fp32, 2 for bf16 and fp16
   */
  public record Workload(
      ModelConfig model,
      int seqLen,
      int microBatch,
      int globalBatch,
      int loraRank,
      List<LoraTarget> loraTargets,
      double linearBytesPerParam,
      int dtypeBytes) {
    public Workload {
      Objects.requireNonNull(model, "model");
      loraTargets = List.copyOf(loraTargets);
      if (seqLen < 1 || microBatch < 1 || globalBatch < 1 || loraRank < 1) {
        throw new IllegalArgumentException(
            "seqLen, microBatch, globalBatch and loraRank must be >= 1");
      }
      if (!(linearBytesPerParam > 0) || dtypeBytes < 1) {
        throw new IllegalArgumentException("bytes per parameter must be > 0");
      }
    }

    /**
     * The job's workload. A 16-bit job with {@code fp32-warmup-steps > 0} counts as FP32: it holds
     * its frozen weights and activations in FP32 until the switch, and must fit then too.
     */
    public static Workload of(JobConfig job, ModelConfig model) {
      boolean fp32 = job.precision().mode().equals("fp32") || job.precision().fp32WarmupSteps() > 0;
      int dtype = fp32 ? 4 : 2;
      double linear =
          switch (job.quantization().base()) {
            case NONE -> dtype;
            case INT8 -> 1.0;
            case INT4, NF4 -> 0.5 + 4.0 / QuantizedTensor.GROUP;
          };
      List<LoraTarget> targets = new ArrayList<>();
      for (String name : job.lora().targets()) {
        LoraTarget t = LoraTarget.fromModuleName(name);
        if (t == null) throw new IllegalArgumentException("unknown LoRA target " + name);
        targets.add(t);
      }
      return new Workload(
          model,
          job.batch().seqLen(),
          job.batch().micro(),
          job.batch().global(),
          job.lora().r(),
          targets,
          linear,
          dtype);
    }

    /** Tokens of one microbatch. */
    long tokens() {
      return (long) seqLen * microBatch;
    }
  }

  /**
   * A plan and its devices.
   *
   * @param devices {@code devices.get(r)} runs rank {@code r} of the plan (see {@link Plan})
   * @param explanation a few lines for {@code troupe status}
   * @param stepSeconds the cost model's estimate of one optimizer step
   */
  public record Choice(Plan plan, List<Device> devices, String explanation, double stepSeconds) {
    public Choice {
      Objects.requireNonNull(plan, "plan");
      devices = List.copyOf(devices);
      if (devices.size() != plan.worldSize()) {
        throw new IllegalArgumentException(
            plan.worldSize() + " ranks but " + devices.size() + " devices");
      }
    }
  }

  /**
   * The plan for {@code w} on {@code devices} (listed by node, then id): exactly {@code settings}'
   * pp, tp and dp where fixed, else the fastest estimated plan on at most all the devices.
   *
   * @throws IllegalArgumentException where no plan is possible: a fixed plan needing more devices
   *     than given, tp not dividing the kv heads or intermediate size, more stages than layers, a
   *     global batch not a multiple of dp × microbatch, or no plan fitting the devices' memory
   */
  public static Choice plan(Workload w, ParallelSettings settings, List<Device> devices) {
    Objects.requireNonNull(w, "w");
    Objects.requireNonNull(settings, "settings");
    devices = List.copyOf(devices);
    if (devices.isEmpty()) throw new IllegalArgumentException("no devices registered");
    if (w.globalBatch % w.microBatch != 0) {
      throw new IllegalArgumentException(
          "batch.global " + w.globalBatch + " is not a multiple of batch.micro " + w.microBatch);
    }
    return settings.auto() ? auto(w, devices) : fixed(w, settings, devices);
  }

  private static Choice fixed(Workload w, ParallelSettings s, List<Device> devices) {
    String name = "parallel " + s;
    if (s.worldSize() > devices.size()) {
      throw new IllegalArgumentException(
          name
              + " needs "
              + s.worldSize()
              + " devices, but only "
              + devices.size()
              + " are registered");
    }
    String why = invalid(w, s.pp(), s.tp(), s.dp());
    if (why != null) throw new IllegalArgumentException(name + ": " + why);
    PlanCost.Evaluation e = PlanCost.evaluate(w, s.pp(), s.tp(), s.dp(), devices);
    if (e.unfit != null) throw new IllegalArgumentException(name + " does not fit: " + e.unfit);
    return PlanExplanation.choice(e, "fixed by the job file", devices.size(), null, null);
  }

  private static Choice auto(Workload w, List<Device> devices) {
    int n = devices.size();
    int layers = w.model.numLayers();
    List<PlanCost.Evaluation> fitting = new ArrayList<>();
    PlanCost.Evaluation single = null;
    PlanCost.Evaluation closest = null;
    double closestRatio = Double.POSITIVE_INFINITY;
    for (int pp = 1; pp <= Math.min(layers, n); pp++) {
      for (int tp = 1; pp * tp <= n; tp++) {
        for (int dp = 1; pp * tp * dp <= n; dp++) {
          if (invalid(w, pp, tp, dp) != null) continue;
          PlanCost.Evaluation e = PlanCost.evaluate(w, pp, tp, dp, devices);
          if (pp * tp * dp == 1) single = e;
          if (e.unfit == null) {
            fitting.add(e);
          } else if (e.overuse < closestRatio) {
            closestRatio = e.overuse;
            closest = e;
          }
        }
      }
    }
    if (fitting.isEmpty()) {
      if (closest == null) {
        throw new IllegalArgumentException(
            "no plan of batch.global " + w.globalBatch + " and batch.micro " + w.microBatch);
      }
      throw new IllegalArgumentException(
          "no plan fits the memory of the "
              + n
              + " registered device"
              + (n == 1 ? "" : "s")
              + "; the closest, "
              + PlanExplanation.shape(closest.plan)
              + ", "
              + closest.unfit);
    }
    PlanCost.Evaluation best = null;
    for (PlanCost.Evaluation e : fitting) if (best == null || compare(e, best) < 0) best = e;
    PlanCost.Evaluation next = null;
    for (PlanCost.Evaluation e : fitting) {
      if (e != best && (next == null || compare(e, next) < 0)) next = e;
    }
    return PlanExplanation.choice(best, "auto", n, next, single);
  }

  /** Orders by estimated step time, ties toward fewer devices, then larger dp, then larger pp. */
  private static int compare(PlanCost.Evaluation a, PlanCost.Evaluation b) {
    double ta = a.stepSeconds;
    double tb = b.stepSeconds;
    if (Math.abs(ta - tb) > TIE * Math.max(ta, tb)) return Double.compare(ta, tb);
    if (a.plan.worldSize() != b.plan.worldSize()) {
      return Integer.compare(a.plan.worldSize(), b.plan.worldSize());
    }
    if (a.plan.dp() != b.plan.dp()) return Integer.compare(b.plan.dp(), a.plan.dp());
    return Integer.compare(b.plan.pp(), a.plan.pp());
  }

  /** Why {@code pp × tp × dp} cannot run {@code w} whatever the devices, or null. */
  private static String invalid(Workload w, int pp, int tp, int dp) {
    ModelConfig m = w.model;
    if (m.numKvHeads() % tp != 0) {
      return "tensor parallel size "
          + tp
          + " does not divide num_key_value_heads "
          + m.numKvHeads();
    }
    if (m.intermediateSize() % tp != 0) {
      return "tensor parallel size "
          + tp
          + " does not divide intermediate_size "
          + m.intermediateSize();
    }
    if (pp > m.numLayers()) {
      return "cannot cut " + m.numLayers() + " decoder layers into " + pp + " pipeline stages";
    }
    if (w.globalBatch % ((long) dp * w.microBatch) != 0) {
      return "batch.global "
          + w.globalBatch
          + " is not a multiple of dp × batch.micro = "
          + dp
          + " × "
          + w.microBatch;
    }
    return null;
  }
}
