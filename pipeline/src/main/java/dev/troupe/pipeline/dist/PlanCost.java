package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.dist.Planner.Device;
import dev.troupe.pipeline.dist.Planner.Workload;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.model.ModelConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The cost model by which {@link Planner} balances stages and compares plans, per decoder layer and
 * token (h = hidden, q = heads·head_dim, kv = kv_heads·head_dim, i = intermediate, c = attended
 * context, the sequence or the sliding window):
 *
 * <ul>
 *   <li>Linear parameters {@code P = 2·h·q + 2·h·kv + 3·h·i} (biases ignored). Forward FLOPs {@code
 *       2·P + 4·c·q} (matmuls, then scores and weighted values over the full causal matrix).
 *   <li>Training FLOPs, LoRA only: the frozen weights get no weight gradient, so the backward pass
 *       costs one more {@code 2·P} (input gradients) and twice the attention, giving {@code 4·P +
 *       3·4·c·q}, plus {@code 6·L} for the adapters' {@code L} parameters (forward, input and
 *       weight gradients). Norms, rotary embeddings and activation functions are ignored.
 *   <li>Memory: frozen linear weights at {@link Planner.Workload#linearBytesPerParam}, norms in the
 *       compute dtype; LoRA parameters at 16 bytes (FP32 master, gradient and two AdamW moments)
 *       plus a copy in the compute dtype; activations kept for the backward pass of {@code
 *       dtype·(4·h + (3·q + 3·kv + 4·i)/tp) + 4·c·heads/tp} bytes per token (the last term the FP32
 *       attention probabilities), times the microbatches a 1F1B stage {@code s} holds in flight,
 *       {@code min(pp − s, m)}. A quantized stage adds one dequantized weight in the compute dtype.
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
final class PlanCost {
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

  private PlanCost() {}

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
      ModelConfig m = w.model();
      double h = m.hiddenSize();
      double q = (double) m.numHeads() * m.headDim();
      double kv = (double) m.numKvHeads() * m.headDim();
      double inter = m.intermediateSize();
      double vocab = m.vocabSize();
      double ctx = m.slidingWindow() > 0 ? Math.min(w.seqLen(), m.slidingWindow()) : w.seqLen();
      double dtype = w.dtypeBytes();
      double linear = 2 * h * q + 2 * h * kv + 3 * h * inter;
      double lora = 0;
      for (LoraTarget t : w.loraTargets()) {
        double[] io =
            switch (t) {
              case Q_PROJ -> new double[] {h, q};
              case K_PROJ, V_PROJ -> new double[] {h, kv};
              case O_PROJ -> new double[] {q, h};
              case GATE_PROJ, UP_PROJ -> new double[] {h, inter};
              case DOWN_PROJ -> new double[] {inter, h};
            };
        // A shard splits the outputs of a column-parallel layer, the inputs of a row-parallel one.
        lora += w.loraRank() * (t.columnParallel() ? io[0] + io[1] / tp : io[0] / tp + io[1]);
      }
      double layerFlops = (4 * linear + 3 * 4 * ctx * q) / tp + 6 * lora;
      double layerBytes =
          linear / tp * w.linearBytesPerParam() + 2 * h * dtype + lora * (16 + dtype);
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
          w.linearBytesPerParam() < dtype
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
    Plan shape = new Plan(pp, tp, dp, evenBoundaries(pp, w.model().numLayers()));
    Costs c = new Costs(w, tp);
    int m = w.globalBatch() / (dp * w.microBatch());
    double tokens = w.tokens();
    double message = tokens * w.model().hiddenSize() * w.dtypeBytes();

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
              if (pp > 1 || !w.model().tieWordEmbeddings()) b += c.headBytes;
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
