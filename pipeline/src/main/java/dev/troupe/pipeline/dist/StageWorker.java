package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.data.BatchPlan;
import dev.troupe.pipeline.data.Example;
import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.lora.LoraKey;
import dev.troupe.pipeline.lora.LoraWeights;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.ShardSpec;
import dev.troupe.pipeline.model.StageSpec;
import dev.troupe.pipeline.model.WeightReader;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.train.Evaluator;
import dev.troupe.pipeline.train.QuantCheck;
import dev.troupe.pipeline.train.TrainStep;
import dev.troupe.pipeline.train.TrainingSetup;
import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.SortedMap;
import java.util.function.IntFunction;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;

/**
 * One rank of a distributed plan: a pipeline stage's tensor shard of the model in one data-parallel
 * replica, with the LoRA pairs and AdamW state of that stage's layers. A step has two halves, so
 * that whoever drives the steps can decide between them:
 *
 * <ol>
 *   <li>{@link #forwardBackward}: the replica's microbatches through the 1F1B schedule (activations
 *       to the next stage, gradients back to the previous one, over the {@link Transport}), tensor
 *       parallel reduces inside the layers, then one all-reduce of the stage's LoRA gradients over
 *       all its shards and replicas. Reports the stage's squared gradient norm and, on the last
 *       stage, the summed loss.
 *   <li>{@link #apply}: with the clip factor chosen from the global norm (or a skip on inf/NaN),
 *       the AdamW update. Every rank of a stage holds the same summed gradients and applies the
 *       same update, so their LoRA copies stay identical.
 * </ol>
 *
 * Each rank holds the whole LoRA pairs of its stage (they are small) and lends its shard views of
 * them to the model; the gradients of the parts other shards use are zero before the sum. Losses
 * are summed and divided by the label tokens of the whole global batch, as on one device, so every
 * plan computes the same step up to the order of floating-point sums.
 *
 * <p>With {@code gradient-checkpointing = true} a microbatch's forward keeps only each layer's
 * input (no autograd graph), and its backward computes each layer again, from the top, with the
 * same dropout seed, as {@link TrainStep} does on one device: the activations a stage holds for the
 * microbatches in flight shrink to one hidden state per layer.
 *
 * <p>{@link #evaluate} runs the job's eval data through the stages ({@link PipelineEval}); {@link
 * #quantMeasure} and {@link #quantApply} are a rank's parts of the quantization-error check ({@link
 * PipelineQuantCheck}).
 */
public final class StageWorker implements AutoCloseable {
  private final JobConfig job;
  private final Plan plan;
  private final Plan.Rank rank;
  private final Transport transport;
  private final TrainingSetup setup;
  private final StageSpec stage;
  private final ShardSpec shard;
  private final Collective tensorParallel;
  private final Collective stageGroup;
  private final StageState trainable;
  private final SortedMap<LoraKey, LoraWeights> lora; // trainable's
  private final List<Tensor> params; // trainable's, in AdamW's order
  private final BatchPlan batches;
  private QuantState quant; // the formats this rank's layers are held in (null: not quantized)
  private final long total;
  private CausalLm model;
  private ComputeDtype dtype;
  private Tensor summed; // the stage's summed, unscaled gradients between the two halves
  private final MicrobatchPasses passes;

  /** What one rank did in the first half of a step. */
  public record Report(
      long step,
      int rank,
      int stage,
      int shard,
      int replica,
      double lossSum,
      long tokens,
      double gradSquares,
      double seconds,
      double waitSeconds) {}

  /**
   * One rank's part of an evaluation ({@link #evaluate}): the summed eval loss and its label
   * tokens, and the exact matches among the generations scored; meaningful on the last stage (zeros
   * elsewhere), the same on every shard of it.
   */
  public record EvalReport(double lossSum, long tokens, int right, int scored) {
    /**
     * The whole evaluation from every rank's report ({@code byRank}): the last stage's shard 0,
     * summed over the replicas; {@code examples} counts the generations scored.
     */
    public static Evaluator.Result combine(Plan plan, IntFunction<EvalReport> byRank) {
      double sum = 0;
      long tokens = 0;
      int right = 0;
      int scored = 0;
      for (int d = 0; d < plan.dp(); d++) {
        EvalReport r = byRank.apply(plan.rankOf(plan.pp() - 1, 0, d));
        sum += r.lossSum();
        tokens += r.tokens();
        right += r.right();
        scored += r.scored();
      }
      double loss = tokens > 0 ? sum / tokens : Double.NaN;
      return new Evaluator.Result(
          loss, Math.exp(loss), tokens, scored == 0 ? Double.NaN : (double) right / scored, scored);
    }
  }

  public StageWorker(JobConfig job, Plan plan, int rank, Transport transport, PrintStream out)
      throws IOException {
    this.job = job;
    this.plan = plan;
    this.rank = plan.rank(rank);
    this.transport = timed(transport);
    Torch.init();
    this.setup = TrainingSetup.open(job, out);
    try {
      var config = setup.model().config();
      if (plan.layers() != config.numLayers()) {
        throw new IllegalArgumentException(
            "plan "
                + plan
                + " covers "
                + plan.layers()
                + " layers; the model has "
                + config.numLayers());
      }
      int global = job.batch().global();
      int micro = job.batch().micro();
      if (global % plan.dp() != 0 || (global / plan.dp()) % micro != 0) {
        throw new IllegalArgumentException(
            "batch.global "
                + global
                + " does not split into "
                + plan.dp()
                + " replicas of whole microbatches of batch.micro "
                + micro);
      }
      this.stage =
          StageSpec.of(
              config, plan.firstLayer(this.rank.stage()), plan.endLayer(this.rank.stage()));
      this.shard = new ShardSpec(this.rank.shard(), plan.tp());
      shard.validate(config);
      List<Integer> shards = new ArrayList<>();
      for (int t = 0; t < plan.tp(); t++)
        shards.add(plan.rankOf(this.rank.stage(), t, this.rank.replica()));
      this.tensorParallel =
          new Collective(
              transport, "tp" + this.rank.stage() + "." + this.rank.replica(), shards, rank);
      List<Integer> members = new ArrayList<>();
      for (int d = 0; d < plan.dp(); d++) {
        for (int t = 0; t < plan.tp(); t++) members.add(plan.rankOf(this.rank.stage(), t, d));
      }
      this.stageGroup = new Collective(transport, "grad" + this.rank.stage(), members, rank);
      this.passes =
          new MicrobatchPasses(
              plan, this.rank, stage, this.transport, tensorParallel, job.gradientCheckpointing());
      this.trainable = new StageState(setup.lora().weights(), stage, job.optimizer());
      this.lora = trainable.lora();
      this.params = trainable.params();
      this.batches = new BatchPlan(setup.train().size(), global, job.data().shuffle(), job.seed());
      this.total = job.totalSteps(setup.train().size());
      this.quant =
          job.quantization().enabled()
              ? QuantState.initial(config.numLayers(), job.quantization().base())
              : null;
    } catch (RuntimeException e) {
      setup.close();
      throw e;
    }
  }

  private long waitNanos; // time blocked in receives during the current step

  /** {@code t}, counting the time its receives block in {@link #waitNanos}. */
  private Transport timed(Transport t) {
    return new Transport() {
      @Override
      public void send(int to, String tag, Tensor tensor) {
        t.send(to, tag, tensor);
      }

      @Override
      public Tensor receive(int from, String tag) {
        long t0 = System.nanoTime();
        try {
          return t.receive(from, tag);
        } finally {
          waitNanos += System.nanoTime() - t0;
        }
      }
    };
  }

  /** The job's number of optimizer steps. */
  public long totalSteps() {
    return total;
  }

  public Plan.Rank rank() {
    return rank;
  }

  /** The compute dtype of 0-based step {@code step}: FP32 during warm-up, then the job's mode. */
  public ComputeDtype phase(long step) {
    return ComputeDtype.parse(job.precision().modeAt(step));
  }

  /**
   * The first half of 0-based step {@code step}: forward and backward of this replica's
   * microbatches through the 1F1B schedule, then the sum of the stage's gradients over its shards
   * and replicas, unscaled by {@code lossScale}.
   */
  public Report forwardBackward(long step, double lossScale) throws IOException {
    long t0 = System.nanoTime();
    waitNanos = 0;
    CausalLm.releaseUnfinishedBackwards();
    CausalLm m = model(phase(step));
    int[] indices = batches.step(step);
    int micro = job.batch().micro();
    int perReplica = indices.length / plan.dp();
    int count = perReplica / micro;
    long tokens = 0;
    List<Batch> mine = new ArrayList<>();
    for (int i = 0; i < indices.length; i += micro) {
      List<Example> rows = new ArrayList<>();
      for (int j = i; j < i + micro; j++) rows.add(setup.train().get(indices[j]));
      Batch b = Batch.of(rows, job.batch().seqLen(), setup.padId());
      tokens += b.labelTokens();
      if (i / perReplica == rank.replica()) mine.add(b);
    }
    double weight = tokens > 0 ? lossScale / tokens : 0;
    long stepSeed = job.seed() * 1_000_003L + step;
    m.lendLora(lora, job.lora().dropout());
    double[] loss = {0};
    MicrobatchPasses.Micro[] open = new MicrobatchPasses.Micro[count];
    int warm = Math.min(plan.pp() - rank.stage() - 1, count);
    for (int i = 0; i < warm; i++)
      open[i] = passes.forward(m, step, i, count, mine.get(i), weight, stepSeed, loss);
    for (int i = warm; i < count; i++) {
      open[i] = passes.forward(m, step, i, count, mine.get(i), weight, stepSeed, loss);
      passes.backward(m, step, i - warm, open[i - warm], weight);
    }
    for (int i = count - warm; i < count; i++) passes.backward(m, step, i, open[i], weight);
    double squares = reduceGradients(lossScale);
    return new Report(
        step,
        rank.index(),
        rank.stage(),
        rank.shard(),
        rank.replica(),
        loss[0],
        tokens,
        squares,
        (System.nanoTime() - t0) / 1e9,
        waitNanos / 1e9);
  }

  /**
   * This rank's part of the evaluation on the job's eval data after {@code steps} steps (with the
   * model of the phase of the last step done), all ranks at once; an empty report where the job has
   * no eval data.
   */
  public EvalReport evaluate(long steps) throws IOException {
    if (setup.eval() == null) return new EvalReport(0, 0, 0, 0);
    CausalLm m = model(phase(Math.max(0, steps - 1)));
    m.lendLora(lora, 0.0);
    return new PipelineEval(plan, rank, stage, transport, tensorParallel)
        .run(
            m,
            steps,
            setup.eval(),
            job.batch().micro(),
            job.batch().seqLen(),
            setup.padId(),
            setup.tokenizer(),
            job.eval().maxNewTokens(),
            setup.eos());
  }

  /**
   * This rank's measure of its layers for the quantization-error check after {@code steps} steps
   * (all ranks at once; see {@link PipelineQuantCheck}).
   */
  public PipelineQuantCheck.Part quantMeasure(long steps) throws IOException {
    CausalLm m = quantModel(steps);
    return quantCheck()
        .measure(
            m,
            original(),
            QuantCheck.calibration(job, setup.train(), setup.padId()),
            job.quantization().policy().fourBit(),
            steps);
  }

  /**
   * Holds this rank's layers as {@code decided} (the driver's state after the check at {@code
   * steps}), re-quantizing those that changed; with the calibration loss after where any layer of
   * the model changed.
   */
  public PipelineQuantCheck.Part quantApply(long steps, QuantState decided) throws IOException {
    CausalLm m = quantModel(steps);
    PipelineQuantCheck.Part p =
        quantCheck()
            .apply(
                m,
                original(),
                QuantCheck.calibration(job, setup.train(), setup.padId()),
                quant,
                decided,
                steps);
    quant = decided.copy();
    return p;
  }

  /** The formats (and calm counts) this rank holds its layers in; null where not quantized. */
  public QuantState quant() {
    return quant == null ? null : quant.copy();
  }

  /**
   * Holds the layers as {@code state} says from now on (a restored run's), where the job's base is
   * quantized; ignored otherwise.
   */
  public void restoreQuant(QuantState state) {
    if (quant == null || state == null) return;
    quant = state.copy();
    if (model != null) model.close();
    model = null;
    dtype = null;
  }

  private CausalLm quantModel(long steps) throws IOException {
    if (quant == null) throw new IllegalStateException("the job's base is not quantized");
    CausalLm m = model(phase(Math.max(0, steps - 1)));
    m.lendLora(lora, 0.0);
    return m;
  }

  private PipelineQuantCheck quantCheck() {
    return new PipelineQuantCheck(plan, rank, stage, transport, tensorParallel);
  }

  private WeightReader original() {
    return new WeightReader(setup.model().weights(), ComputeDtype.FP32);
  }

  /** Sums the stage's gradients over its group as one flat tensor, unscales, returns |g|². */
  private double reduceGradients(double lossScale) {
    if (summed != null) summed.close();
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      TensorVector flat = new TensorVector();
      for (Tensor p : params) {
        Tensor g = p.grad();
        flat.push_back(g.defined() ? g.reshape(-1) : torch.zeros(p.numel()));
      }
      Tensor all = params.isEmpty() ? torch.zeros(0) : torch.cat(flat);
      stageGroup.sumInPlace(all);
      if (lossScale != 1.0) all.mul_(Torch.scalar(1.0 / lossScale));
      summed = Torch.keep(all);
      // per tensor, squares summed in double, as the one-device step does: the same clip factor
      // to the bit, so a plan's updates are the one-device updates
      double squares = 0;
      long offset = 0;
      for (Tensor p : params) {
        double n = torch.linalg_vector_norm(all.narrow(0, offset, p.numel())).item_double();
        squares += n * n;
        offset += p.numel();
      }
      return squares;
    }
  }

  /**
   * The second half of step {@code step}: unless {@code skip}, scales the summed gradients by
   * {@code clip} (≤ 1; 1 for no clipping) and applies AdamW with learning rate {@code lr}. Clears
   * the gradients either way.
   */
  public void apply(long step, double clip, boolean skip, double lr) {
    if (summed == null) throw new IllegalStateException("apply before forwardBackward");
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      if (!skip) {
        if (clip < 1) summed.mul_(Torch.scalar(clip));
        List<Tensor> grads = new ArrayList<>();
        long offset = 0;
        for (Tensor p : params) {
          grads.add(summed.narrow(0, offset, p.numel()).view(Torch.shape(p)));
          offset += p.numel();
        }
        trainable.optimizer().step(params, grads, lr);
      }
      for (Tensor p : params) p.mutable_grad().put(new Tensor()); // as TrainStep: dropped
    }
    summed.close();
    summed = null;
  }

  /** This stage's LoRA pairs as F32 tensors under their PEFT names. */
  public SortedMap<String, TensorData> adapterTensors() {
    return trainable.adapterTensors();
  }

  /**
   * What a checkpoint keeps of this stage, under the names the one-device checkpoint uses: the LoRA
   * pairs (PEFT names) and AdamW's moments ({@code exp_avg.NAME}, {@code exp_avg_sq.NAME}).
   */
  public SortedMap<String, TensorData> state() {
    return trainable.state();
  }

  /** AdamW's step count. */
  public long optimizerStep() {
    return trainable.optimizer().stepCount();
  }

  /**
   * Restores this stage's LoRA pairs and moments from {@code tensors} (a checkpoint's, keyed as
   * {@link #state} writes them; other stages' entries are ignored).
   *
   * @throws IllegalArgumentException naming the tensor that is missing or has the wrong shape
   */
  public void restore(java.util.Map<String, TensorData> tensors, long optimizerStep) {
    trainable.restore(tensors, optimizerStep);
  }

  private CausalLm model(ComputeDtype wanted) throws IOException {
    if (wanted != dtype) {
      if (model != null) model.close();
      model = null;
      model = setup.loadStage(wanted, quant, stage, shard);
      dtype = wanted;
    }
    return model;
  }

  @Override
  public void close() throws IOException {
    if (summed != null) summed.close();
    if (model != null) model.close();
    trainable.close();
    setup.close();
  }
}
