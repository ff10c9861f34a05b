package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.job.ParallelSettings;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.quant.QuantizedTensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Chooses how to split a LoRA job over devices: pipeline stages, tensor shards and data-parallel
 * replicas ({@link Plan}), with stage boundaries balanced by a rough cost model. Pure arithmetic:
 * no actors, no libtorch.
 *
 * <p>The cost model, per decoder layer and token (h = hidden, q = heads·head_dim, kv =
 * kv_heads·head_dim, i = intermediate, c = attended context, the sequence or the sliding window):
 *
 * <ul>
 *   <li>Linear parameters {@code P = 2·h·q + 2·h·kv + 3·h·i} (biases ignored). Forward FLOPs {@code
 *       2·P + 4·c·q} (matmuls, then scores and weighted values over the full causal matrix).
 *   <li>Training FLOPs, LoRA only: the frozen weights get no weight gradient, so the backward pass
 *       costs one more {@code 2·P} (input gradients) and twice the attention, giving {@code 4·P +
 *       3·4·c·q}, plus {@code 6·L} for the adapters' {@code L} parameters (forward, input and
 *       weight gradients). Norms, rotary embeddings and activation functions are ignored.
 *   <li>Memory: frozen linear weights at {@link Workload#linearBytesPerParam}, norms in the compute
 *       dtype; LoRA parameters at 16 bytes (FP32 master, gradient and two AdamW moments) plus a
 *       copy in the compute dtype; activations kept for the backward pass of {@code dtype·(4·h +
 *       (3·q + 3·kv + 4·i)/tp) + 4·c·heads/tp} bytes per token (the last term the FP32 attention
 *       probabilities), times the microbatches a 1F1B stage {@code s} holds in flight, {@code
 *       min(pp − s, m)}. A quantized stage adds one dequantized weight in the compute dtype.
 *   <li>The embedding (a gather: memory, no compute) sits on the first stage; the final norm and
 *       output head ({@code 4·h·vocab} training FLOPs per token, logits and their FP32 gradient
 *       {@code vocab·(dtype + 8)} bytes per token) on the last, which holds its own copy of a tied
 *       head when {@code pp > 1}. Both are replicated over the tensor shards, not divided.
 * </ul>
 *
 * <p>A stage's time per microbatch is its FLOPs per rank over {@link #FLOPS_PER_THREAD} times the
 * threads of its slowest device, plus its tensor-parallel all-reduces (two per layer forward, two
 * backward, of the hidden states) and its point-to-point sends to the neighbouring stages. A step
 * takes {@code (m + pp − 1)} times the slowest stage's time (1F1B with {@code m} microbatches per
 * replica), plus one all-reduce of the LoRA gradients over the replicas, plus {@link
 * #DRIVER_SECONDS_PER_STEP} for any plan over several devices. Collectives are rings at {@link
 * #INTRA_NODE_BYTES_PER_SECOND} within a node, {@link #INTER_NODE_BYTES_PER_SECOND} across nodes. A
 * plan fits where every device's estimate is at most {@link #USABLE_MEMORY} of its memory. All of
 * these are nominal figures: good for comparing plans, not for predicting step times.
 */
public final class Planner {
  /** Sustained FLOP/s of one thread, nominal. */
  static final double FLOPS_PER_THREAD = 2e10;

  /** Collective bandwidth between devices of one node, nominal. */
  static final double INTRA_NODE_BYTES_PER_SECOND = 4e9;

  /** Collective bandwidth across nodes (about 10 Gb/s Ethernet), nominal. */
  static final double INTER_NODE_BYTES_PER_SECOND = 1e9;

  static final double INTRA_NODE_LATENCY_SECONDS = 20e-6;
  static final double INTER_NODE_LATENCY_SECONDS = 200e-6;

  /**
   * What driving a step over several devices adds, whatever the model: the coordinator's two rounds
   * of actor messages to every rank and back (the halves of a step), and the gradient flattening
   * around them. Nominal; it keeps small jobs on one device.
   */
  static final double DRIVER_SECONDS_PER_STEP = 3e-3;

  /** The share of a device's memory a plan may fill; the rest is left to the runtime. */
  static final double USABLE_MEMORY = 0.9;

  /** Relative difference of estimated step times below which two plans tie. */
  private static final double TIE = 1e-9;

  private Planner() {}

  /**
   * A device a rank can run on.
   *
   * @param id its name, unique in the cluster, e.g. {@code cpu:0}
   * @param node the address of its node; devices of one node talk cheaply
   * @param memoryBytes the memory the plan may use, before {@link #USABLE_MEMORY}
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
    Evaluation e = evaluate(w, s.pp(), s.tp(), s.dp(), devices);
    if (e.unfit != null) throw new IllegalArgumentException(name + " does not fit: " + e.unfit);
    return PlanExplanation.choice(e, "fixed by the job file", devices.size(), null, null);
  }

  private static Choice auto(Workload w, List<Device> devices) {
    int n = devices.size();
    int layers = w.model.numLayers();
    List<Evaluation> fitting = new ArrayList<>();
    Evaluation single = null;
    Evaluation closest = null;
    double closestRatio = Double.POSITIVE_INFINITY;
    for (int pp = 1; pp <= Math.min(layers, n); pp++) {
      for (int tp = 1; pp * tp <= n; tp++) {
        for (int dp = 1; pp * tp * dp <= n; dp++) {
          if (invalid(w, pp, tp, dp) != null) continue;
          Evaluation e = evaluate(w, pp, tp, dp, devices);
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
    Evaluation best = null;
    for (Evaluation e : fitting) if (best == null || compare(e, best) < 0) best = e;
    Evaluation next = null;
    for (Evaluation e : fitting) {
      if (e != best && (next == null || compare(e, next) < 0)) next = e;
    }
    return PlanExplanation.choice(best, "auto", n, next, single);
  }

  /** Orders by estimated step time, ties toward fewer devices, then larger dp, then larger pp. */
  private static int compare(Evaluation a, Evaluation b) {
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

  /**
   * The devices of a {@code pp × tp × dp} plan, in rank order: the first {@code pp·tp·dp}, except
   * that with {@code tp > 1} each stage's shards are taken from one node where the nodes allow.
   */
  static List<Device> assign(List<Device> devices, int pp, int tp, int dp) {
    int k = pp * tp * dp;
    if (tp > 1) {
      Map<String, List<Device>> byNode = new LinkedHashMap<>();
      for (Device d : devices) byNode.computeIfAbsent(d.node(), x -> new ArrayList<>()).add(d);
      List<Device> out = new ArrayList<>();
      for (List<Device> node : byNode.values()) {
        for (int g = 0; g + tp <= node.size() && out.size() < k; g += tp) {
          out.addAll(node.subList(g, g + tp));
        }
      }
      if (out.size() == k) return List.copyOf(out);
    }
    return List.copyOf(devices.subList(0, k));
  }

  /** Per-rank costs of {@code w} cut into {@code tp} shards. */
  private static final class Costs {
    final int layers;
    final double[] flops; // training FLOPs per token of each layer on one rank
    final double[] bytes; // weights and LoRA state of each layer on one rank
    final double[] activations; // activation bytes per token of each layer on one rank
    final double[] loraParams; // LoRA parameters of each layer on one rank
    final double headFlops;
    final double embeddingBytes;
    final double normBytes; // the final norm
    final double headBytes; // the head's weight
    final double headActivations; // per token
    final double dequantBytes; // one dequantized weight, 0 when not quantized

    Costs(Workload w, int tp) {
      ModelConfig m = w.model;
      double h = m.hiddenSize();
      double q = (double) m.numHeads() * m.headDim();
      double kv = (double) m.numKvHeads() * m.headDim();
      double inter = m.intermediateSize();
      double vocab = m.vocabSize();
      double ctx = m.slidingWindow() > 0 ? Math.min(w.seqLen, m.slidingWindow()) : w.seqLen;
      double dtype = w.dtypeBytes;
      double linear = 2 * h * q + 2 * h * kv + 3 * h * inter;
      double lora = 0;
      for (LoraTarget t : w.loraTargets) {
        double[] io =
            switch (t) {
              case Q_PROJ -> new double[] {h, q};
              case K_PROJ, V_PROJ -> new double[] {h, kv};
              case O_PROJ -> new double[] {q, h};
              case GATE_PROJ, UP_PROJ -> new double[] {h, inter};
              case DOWN_PROJ -> new double[] {inter, h};
            };
        // A shard splits the outputs of a column-parallel layer, the inputs of a row-parallel one.
        lora += w.loraRank * (t.columnParallel() ? io[0] + io[1] / tp : io[0] / tp + io[1]);
      }
      double layerFlops = (4 * linear + 3 * 4 * ctx * q) / tp + 6 * lora;
      double layerBytes = linear / tp * w.linearBytesPerParam + 2 * h * dtype + lora * (16 + dtype);
      double layerActivations =
          dtype * (4 * h + (3 * q + 3 * kv + 4 * inter) / tp) + 4 * ctx * m.numHeads() / tp;
      layers = m.numLayers();
      flops = new double[layers];
      bytes = new double[layers];
      activations = new double[layers];
      loraParams = new double[layers];
      Arrays.fill(flops, layerFlops);
      Arrays.fill(bytes, layerBytes);
      Arrays.fill(activations, layerActivations);
      Arrays.fill(loraParams, lora);
      headFlops = 4 * h * vocab;
      embeddingBytes = vocab * h * dtype;
      normBytes = h * dtype;
      headBytes = h * vocab * dtype;
      headActivations = vocab * (dtype + 8);
      dequantBytes =
          w.linearBytesPerParam < dtype
              ? Math.max(h * inter, Math.max(h * q, h * kv)) / tp * dtype
              : 0;
    }
  }

  /** A plan with its devices and estimates, or why it does not fit. */
  static final class Evaluation {
    Plan plan;
    List<Device> devices;
    int microbatches;
    double stepSeconds;
    double[] stageSeconds; // per microbatch, compute and communication
    double dpSeconds;
    double[] stageBytes; // on each rank of the stage
    double[] stageCapacity; // the smallest usable memory among the stage's devices
    String unfit; // null when it fits
    double overuse; // the largest need / usable memory, when it does not fit
  }

  /** Balances and estimates {@code pp × tp × dp} on the devices {@link #assign} gives it. */
  static Evaluation evaluate(Workload w, int pp, int tp, int dp, List<Device> all) {
    List<Device> devices = assign(all, pp, tp, dp);
    Plan shape = new Plan(pp, tp, dp, evenBoundaries(pp, w.model.numLayers()));
    Costs c = new Costs(w, tp);
    int m = w.globalBatch / (dp * w.microBatch);
    double tokens = w.tokens();
    double message = tokens * w.model.hiddenSize() * w.dtypeBytes;

    double[] speed = new double[pp];
    double[] capacity = new double[pp];
    Device[] smallest = new Device[pp];
    double[] fixedSeconds = new double[pp];
    double[] perLayerSeconds = new double[pp];
    for (int s = 0; s < pp; s++) {
      int threads = Integer.MAX_VALUE;
      capacity[s] = Double.POSITIVE_INFINITY;
      for (int r = 0; r < dp; r++) {
        for (int k = 0; k < tp; k++) {
          Device d = devices.get(shape.rankOf(s, k, r));
          threads = Math.min(threads, d.threads());
          if (d.memoryBytes() * USABLE_MEMORY < capacity[s]) {
            capacity[s] = d.memoryBytes() * USABLE_MEMORY;
            smallest[s] = d;
          }
        }
      }
      speed[s] = threads * FLOPS_PER_THREAD;
      perLayerSeconds[s] = 4 * allReduce(message, tp, tpLink(shape, devices, s));
      if (s + 1 < pp) fixedSeconds[s] += send(message, sameNode(shape, devices, s, s + 1));
      if (s > 0) fixedSeconds[s] += send(message, sameNode(shape, devices, s - 1, s));
    }

    int layers = c.layers;
    double[] flopSum = prefix(c.flops);
    double[] byteSum = prefix(c.bytes);
    double[] actSum = prefix(c.activations);
    Stage stage =
        new Stage() {
          @Override
          public double seconds(int s, int i, int j) {
            double f = tokens * (flopSum[j] - flopSum[i] + (s == pp - 1 ? c.headFlops : 0));
            return f / speed[s] + (j - i) * perLayerSeconds[s] + fixedSeconds[s];
          }

          @Override
          public double bytes(int s, int i, int j) {
            double b = byteSum[j] - byteSum[i] + c.dequantBytes;
            b += Math.min(pp - s, m) * tokens * (actSum[j] - actSum[i]);
            if (s == 0) b += c.embeddingBytes;
            if (s == pp - 1) {
              b += c.normBytes + tokens * c.headActivations;
              // A tied head is the embedding; a last stage that is not the first needs a copy.
              if (pp > 1 || !w.model.tieWordEmbeddings()) b += c.headBytes;
            }
            return b;
          }
        };

    int[] boundaries = balance(pp, layers, stage, capacity);
    Evaluation e = new Evaluation();
    e.devices = devices;
    e.microbatches = m;
    e.stageCapacity = capacity;
    boolean fits = boundaries != null;
    if (!fits) boundaries = evenBoundaries(pp, layers);
    e.plan = new Plan(pp, tp, dp, boundaries);
    e.stageSeconds = new double[pp];
    e.stageBytes = new double[pp];
    double slowest = 0;
    double dpSeconds = 0;
    for (int s = 0; s < pp; s++) {
      int i = boundaries[s];
      int j = boundaries[s + 1];
      e.stageSeconds[s] = stage.seconds(s, i, j);
      e.stageBytes[s] = stage.bytes(s, i, j);
      slowest = Math.max(slowest, e.stageSeconds[s]);
      double lora = 0;
      for (int l = i; l < j; l++) lora += c.loraParams[l];
      dpSeconds = Math.max(dpSeconds, allReduce(4 * lora, dp, dpLink(e.plan, devices, s)));
      double ratio = e.stageBytes[s] / capacity[s];
      if (!fits && ratio > e.overuse) {
        e.overuse = ratio;
        e.unfit =
            "stage "
                + s
                + " ("
                + PlanExplanation.contents(e.plan, s)
                + ") needs est. "
                + PlanExplanation.bytes(e.stageBytes[s])
                + " on "
                + smallest[s].label()
                + ", which has "
                + PlanExplanation.bytes(smallest[s].memoryBytes())
                + " ("
                + PlanExplanation.percent(USABLE_MEMORY)
                + " usable)";
      }
    }
    e.dpSeconds = dpSeconds;
    e.stepSeconds =
        (m + pp - 1) * slowest + dpSeconds + (pp * tp * dp > 1 ? DRIVER_SECONDS_PER_STEP : 0);
    return e;
  }

  /** Time and memory of stage {@code s} holding layers {@code [i, j)}. */
  private interface Stage {
    double seconds(int s, int i, int j);

    double bytes(int s, int i, int j);
  }

  /**
   * Contiguous boundaries minimising the slowest stage's time, every stage fitting its capacity;
   * null where no cut fits. Dynamic programming over (stage, end layer), ties toward the earlier
   * cut.
   */
  private static int[] balance(int pp, int layers, Stage stage, double[] capacity) {
    double[][] best = new double[pp][layers + 1];
    int[][] cut = new int[pp][layers + 1];
    for (double[] row : best) Arrays.fill(row, Double.POSITIVE_INFINITY);
    for (int j = 1; j <= layers - (pp - 1); j++) {
      if (stage.bytes(0, 0, j) <= capacity[0]) best[0][j] = stage.seconds(0, 0, j);
    }
    for (int s = 1; s < pp; s++) {
      for (int j = s + 1; j <= layers - (pp - 1 - s); j++) {
        for (int i = s; i < j; i++) {
          if (best[s - 1][i] == Double.POSITIVE_INFINITY) continue;
          if (stage.bytes(s, i, j) > capacity[s]) continue;
          double t = Math.max(best[s - 1][i], stage.seconds(s, i, j));
          if (t < best[s][j]) {
            best[s][j] = t;
            cut[s][j] = i;
          }
        }
      }
    }
    if (best[pp - 1][layers] == Double.POSITIVE_INFINITY) return null;
    int[] b = new int[pp + 1];
    b[pp] = layers;
    for (int s = pp - 1; s > 0; s--) b[s] = cut[s][b[s + 1]];
    return b;
  }

  private static int[] evenBoundaries(int pp, int layers) {
    return Plan.even(pp, 1, 1, layers).boundaries();
  }

  private static double[] prefix(double[] v) {
    double[] p = new double[v.length + 1];
    for (int i = 0; i < v.length; i++) p[i + 1] = p[i] + v[i];
    return p;
  }

  /** A ring all-reduce of {@code bytes} over {@code n} ranks. */
  private static double allReduce(double bytes, int n, boolean sameNode) {
    if (n == 1) return 0;
    double bandwidth = sameNode ? INTRA_NODE_BYTES_PER_SECOND : INTER_NODE_BYTES_PER_SECOND;
    double latency = sameNode ? INTRA_NODE_LATENCY_SECONDS : INTER_NODE_LATENCY_SECONDS;
    return 2.0 * (n - 1) / n * bytes / bandwidth + 2.0 * (n - 1) * latency;
  }

  private static double send(double bytes, boolean sameNode) {
    return sameNode
        ? bytes / INTRA_NODE_BYTES_PER_SECOND + INTRA_NODE_LATENCY_SECONDS
        : bytes / INTER_NODE_BYTES_PER_SECOND + INTER_NODE_LATENCY_SECONDS;
  }

  /** Whether every tensor group of stage {@code s} lies on one node. */
  private static boolean tpLink(Plan p, List<Device> devices, int s) {
    for (int r = 0; r < p.dp(); r++) {
      String node = devices.get(p.rankOf(s, 0, r)).node();
      for (int k = 1; k < p.tp(); k++) {
        if (!devices.get(p.rankOf(s, k, r)).node().equals(node)) return false;
      }
    }
    return true;
  }

  /** Whether every replica group of stage {@code s} lies on one node. */
  private static boolean dpLink(Plan p, List<Device> devices, int s) {
    for (int k = 0; k < p.tp(); k++) {
      String node = devices.get(p.rankOf(s, k, 0)).node();
      for (int r = 1; r < p.dp(); r++) {
        if (!devices.get(p.rankOf(s, k, r)).node().equals(node)) return false;
      }
    }
    return true;
  }

  /** Whether stages {@code a} and {@code b} send to each other within nodes only. */
  private static boolean sameNode(Plan p, List<Device> devices, int a, int b) {
    for (int r = 0; r < p.dp(); r++) {
      for (int k = 0; k < p.tp(); k++) {
        String na = devices.get(p.rankOf(a, k, r)).node();
        if (!na.equals(devices.get(p.rankOf(b, k, r)).node())) return false;
      }
    }
    return true;
  }
}
