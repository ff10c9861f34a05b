package dev.troupe.pipeline.train;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraParameters;
import dev.troupe.pipeline.model.AllReduce;
import dev.troupe.pipeline.model.CausalLm;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorArrayRefOptional;
import org.bytedeco.pytorch.global.torch;

/**
 * One optimizer step of LoRA training on one device: forward and backward over the microbatches of
 * a global batch (gradients accumulate in the FP32 masters), then unscale, check for inf/NaN, clip
 * by global norm, and update with AdamW.
 */
public final class TrainStep {
  private TrainStep() {}

  /**
   * What a step did.
   *
   * @param loss mean cross-entropy over the step's label tokens
   * @param gradNorm global L2 norm of the (unscaled) gradients before clipping
   * @param skipped true where the gradients held inf or NaN and the update was skipped
   */
  public record Result(double loss, double gradNorm, long tokens, boolean skipped) {}

  /**
   * @param lossScale the fp16 loss scale (1 in fp32 and bf16)
   * @param maxGradNorm clip threshold; 0 = no clipping
   * @param stepSeed seeds libtorch's generator before every layer of every microbatch (mixed with
   *     the microbatch and layer index), so dropout masks are a function of the step and a layer
   *     recomputed in the backward pass draws the same masks as its first forward
   * @param checkpointing recompute each decoder layer during backward instead of keeping its
   *     activations: the same gradients, less memory, about one more forward of compute
   */
  public static Result run(
      CausalLm model,
      LoraParameters lora,
      AdamW optimizer,
      List<Batch> microbatches,
      double lr,
      double maxGradNorm,
      double lossScale,
      long stepSeed,
      boolean checkpointing) {
    return run(
        model,
        lora.parameters(),
        optimizer,
        microbatches,
        lr,
        maxGradNorm,
        lossScale,
        stepSeed,
        checkpointing);
  }

  /**
   * One optimizer step over {@code params}, whatever they are: the LoRA masters, or every weight of
   * the model in full fine-tuning (then without {@code checkpointing}, which assumes a frozen
   * embedding).
   */
  public static Result run(
      CausalLm model,
      List<Tensor> params,
      AdamW optimizer,
      List<Batch> microbatches,
      double lr,
      double maxGradNorm,
      double lossScale,
      long stepSeed,
      boolean checkpointing) {
    CausalLm.releaseUnfinishedBackwards();
    long tokens = microbatches.stream().mapToLong(Batch::labelTokens).sum();
    double lossSum = 0;
    for (int mb = 0; mb < microbatches.size(); mb++) {
      Batch b = microbatches.get(mb);
      // One scope per microbatch: its activations are freed as soon as its backward is done.
      try (PointerScope scope = new PointerScope()) {
        Tensor ids = Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen());
        Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
        // d(step loss)/d(theta) accumulates over microbatches: each contributes sum / all tokens.
        double weight = tokens > 0 ? lossScale / tokens : 0;
        lossSum +=
            checkpointing
                ? forwardBackwardRecomputing(model, ids, labels, weight, stepSeed, mb)
                : forwardBackward(model, ids, labels, weight, stepSeed, mb);
      }
    }
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      List<Tensor> grads = new ArrayList<>();
      for (Tensor p : params) {
        Tensor g = p.grad();
        grads.add(g.defined() ? g : torch.zeros_like(p));
      }
      if (lossScale != 1.0) grads.forEach(g -> g.mul_(Torch.scalar(1.0 / lossScale)));
      double sq = 0;
      for (Tensor g : grads) {
        double n = torch.linalg_vector_norm(g).item_double();
        sq += n * n;
      }
      double norm = Math.sqrt(sq);
      boolean finite = Double.isFinite(norm);
      if (finite && tokens > 0) {
        if (maxGradNorm > 0) {
          double coef = maxGradNorm / (norm + 1e-6); // torch.nn.utils.clip_grad_norm_
          if (coef < 1) grads.forEach(g -> g.mul_(Torch.scalar(coef)));
        }
        optimizer.step(params, grads, lr);
      }
      // drop the gradients (torch's zero_grad(set_to_none=True)): the next backward hands its
      // first gradient of each parameter over instead of adding it to zeros, and they are not
      // held through the next forward
      for (Tensor p : params) p.mutable_grad().put(new Tensor());
      return new Result(tokens > 0 ? lossSum / tokens : 0.0, norm, tokens, !finite);
    }
  }

  /** Forward keeping every activation, then one backward. Returns the summed loss. */
  private static double forwardBackward(
      CausalLm model, Tensor ids, Tensor labels, double weight, long stepSeed, int mb) {
    Tensor h = model.embed(ids);
    for (int i = 0; i < model.layerCount(); i++) {
      seed(stepSeed, mb, i);
      h = model.forwardLayer(i, h, AllReduce.NONE);
    }
    Tensor top = h.detach();
    top.set_requires_grad(true);
    double value = headForwardBackward(model, top, labels, weight);
    if (weight > 0) h.backward(top.grad(), new BoolOptional(), false, new TensorArrayRefOptional());
    return value;
  }

  /**
   * Logits of at most this many FP32 values exist at a time in the head's forward and backward,
   * unless the head is trained ({@link #TRAINED_HEAD_CHUNK_ROWS}) or its products run in FP32
   * ({@link #FP32_HEAD_CHUNK_ROWS}).
   */
  static final long HEAD_CHUNK_VALUES = 4L << 20; // 16 MiB

  /**
   * Rows of a chunk at least where the head's weights are trained (full fine-tuning). Each chunk's
   * backward adds its part to the whole FP32 weight gradient (vocab × hidden), read and written
   * again per chunk, and each chunk's products pack the whole weight again: with chunks of 131 rows
   * (bench-m, 32000 tokens of vocabulary) that traffic took ~13% of a full-fp32 step (`troupe
   * bench-run --mode full-fp32`: 166 against 188 tokens/s with 512 rows). The larger chunk's logits
   * (64 MiB there) are small beside what a trained head holds anyway: its FP32 gradient and two
   * Adam moments, three times the weight. A frozen head (LoRA) in bf16 keeps the small chunks:
   * there the logits would set the peak.
   */
  static final long TRAINED_HEAD_CHUNK_ROWS = 512;

  /**
   * Rows of a chunk at least where the head's products run in FP32 (FP32 compute, and fp16, whose
   * products run in FP32 on the CPU). OpenBLAS packs the whole head weight again for every chunk:
   * with 131-row chunks (bench-m) that packing was most of the 11% of a lora-fp32 profile in {@code
   * sgemm_itcopy} (the peer's, with the whole batch's logits at once: 3.5%), and 512-row chunks ran
   * 16% faster for 100 MiB more at the peak (lora-fp32, 3 alternating pairs: 321 against 276
   * tokens/s). In bf16 (oneDNN) 32 MiB chunks gained nothing (lora-int8 714 against 715, lora-bf16
   * 824 against 825) for 45 MiB more, where the memory matters most.
   */
  static final long FP32_HEAD_CHUNK_ROWS = 512;

  /** The rows of the head's chunks for this model. */
  static long headChunkRows(CausalLm model) {
    long rows = Math.max(1, HEAD_CHUNK_VALUES / model.config().vocabSize());
    if (model.headTrained()) return Math.max(rows, TRAINED_HEAD_CHUNK_ROWS);
    return model.dtype() == ComputeDtype.BF16 ? rows : Math.max(rows, FP32_HEAD_CHUNK_ROWS);
  }

  /**
   * The output head and the loss over the hidden states {@code top} (a leaf that requires grad), in
   * chunks of rows so that the logits of a large vocabulary never exist all at once: each chunk's
   * logits, loss and backward, accumulating into {@code top.grad()} (and into the head's weights
   * where they are trained). Labels are shifted once for the whole batch (position t predicts t+1),
   * so chunks may split sequences. Returns the summed loss.
   */
  public static double headForwardBackward(
      CausalLm model, Tensor top, Tensor labels, double weight) {
    return headForwardBackward(model, top, labels, weight, headChunkRows(model));
  }

  /** {@link #headForwardBackward} with {@code chunk} rows at a time. */
  static double headForwardBackward(
      CausalLm model, Tensor top, Tensor labels, double weight, long chunk) {
    long rows = top.size(0) * top.size(1);
    Tensor flat = top.view(rows, top.size(2));
    Tensor targets = CausalLmLoss.shifted(labels).view(rows);
    double value = 0;
    boolean fused = weight > 0 && !model.headTrained();
    for (long start = 0; start < rows; start += chunk) {
      long n = Math.min(chunk, rows - start);
      if (fused) {
        value +=
            frozenHeadChunk(model, flat.narrow(0, start, n), targets.narrow(0, start, n), weight);
        continue;
      }
      try (PointerScope scope = new PointerScope()) {
        Tensor sum =
            CausalLmLoss.sumFlat(
                model.logits(flat.narrow(0, start, n)), targets.narrow(0, start, n));
        value += sum.item_double();
        if (weight > 0) sum.mul(Torch.scalar(weight)).backward();
      }
    }
    return value;
  }

  /**
   * One chunk of a frozen head's loss and backward: the final norm under autograd, then the logits,
   * the loss and the logits' gradient without it ({@link CausalLmLoss#sumAndGradientInPlace}), the
   * norm's output gradient through the head's weight, and the backward from there. The same
   * gradients as autograd through the logits and the loss ({@code CausalLmLossTest}), the FP32
   * logits turned into their own gradient where autograd keeps the log-probabilities and makes two
   * more tensors their size (bench-m lora-int8: peak 867 against 903 MiB).
   */
  private static double frozenHeadChunk(CausalLm model, Tensor x, Tensor targets, double weight) {
    try (PointerScope scope = new PointerScope()) {
      Tensor normed = model.finalNormed(x);
      Tensor gradNormed;
      double sum;
      try (NoGradGuard noGrad = new NoGradGuard()) {
        Tensor logits = model.headLogits(normed.detach());
        sum = CausalLmLoss.sumAndGradientInPlace(logits, targets, weight);
        gradNormed = model.headInputGradient(logits, normed.scalar_type());
        logits.close();
      }
      normed.backward(gradNormed, new BoolOptional(), false, new TensorArrayRefOptional());
      return sum;
    }
  }

  /**
   * Gradient checkpointing: a forward without autograd that keeps only each layer's input, the
   * head's backward, then for each layer from the top its forward again (same seed, so the same
   * dropout masks) and its backward with the gradient that came down from above.
   */
  private static double forwardBackwardRecomputing(
      CausalLm model, Tensor ids, Tensor labels, double weight, long stepSeed, int mb) {
    int n = model.layerCount();
    Tensor[] inputs = new Tensor[n + 1];
    try (NoGradGuard noGrad = new NoGradGuard()) {
      inputs[0] = model.embed(ids);
      for (int i = 0; i < n; i++) {
        seed(stepSeed, mb, i);
        inputs[i + 1] = model.forwardLayer(i, inputs[i], AllReduce.NONE);
      }
    }
    Tensor top = inputs[n].detach();
    top.set_requires_grad(true);
    double value = headForwardBackward(model, top, labels, weight);
    if (weight <= 0) return value;
    Tensor grad = top.grad(); // owned by the microbatch's scope
    boolean owned = false;
    for (int i = n - 1; i >= 0; i--) {
      Tensor below = null;
      try (PointerScope layerScope = new PointerScope()) {
        Tensor x = inputs[i].detach();
        if (i > 0) x.set_requires_grad(true); // the embedding is frozen: no gradient below layer 0
        seed(stepSeed, mb, i);
        Tensor y = model.forwardLayer(i, x, AllReduce.NONE);
        y.backward(grad, new BoolOptional(), false, new TensorArrayRefOptional());
        // the gradient for the layer below outlives this layer's recomputed activations
        // grad() is a reference into x, which this scope frees: take a handle of its own
        if (i > 0) below = Torch.keep(x.grad().detach());
      }
      if (owned) grad.close();
      grad = below;
      owned = true;
    }
    return value;
  }

  /**
   * Seeds this thread's generator ({@link Torch#seedThread}) for one layer of one microbatch of a
   * step (global indices: every plan draws the same dropout masks for the same microbatch and
   * layer, whichever thread runs it).
   */
  public static void seed(long stepSeed, int microbatch, int layer) {
    long s =
        stepSeed * 0x9E3779B97F4A7C15L
            + microbatch * 0xBF58476D1CE4E5B9L
            + layer * 0x94D049BB133111EBL;
    s ^= s >>> 31;
    Torch.seedThread(s);
  }
}
