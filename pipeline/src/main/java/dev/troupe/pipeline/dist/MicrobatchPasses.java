package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.StageSpec;
import dev.troupe.pipeline.train.TrainStep;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorArrayRefOptional;

/**
 * One rank's forward and backward of a microbatch, the two moves {@link StageWorker}'s 1F1B
 * schedule interleaves: activations come from the stage before (or the embedding) and go to the
 * stage after (or the head and its loss); gradients come back from the stage after (or the head)
 * and go to the stage before. With gradient checkpointing the forward keeps each layer's input
 * instead of an autograd graph, and the backward computes each layer again from the top, with the
 * same dropout seeds, as {@link TrainStep} does on one device.
 */
final class MicrobatchPasses {
  private final Plan plan;
  private final Plan.Rank rank;
  private final StageSpec stage;
  private final Transport transport;
  private final Collective tensorParallel;
  private final boolean checkpointing;

  MicrobatchPasses(
      Plan plan,
      Plan.Rank rank,
      StageSpec stage,
      Transport transport,
      Collective tensorParallel,
      boolean checkpointing) {
    this.plan = plan;
    this.rank = rank;
    this.stage = stage;
    this.transport = transport;
    this.tensorParallel = tensorParallel;
    this.checkpointing = checkpointing;
  }

  /** The tensors of one microbatch between its forward and its backward (owned here). */
  static final class Micro {
    Tensor input; // received activations (requires grad); null on the first stage
    Tensor output; // this stage's output; null with gradient checkpointing
    Tensor top; // the last stage's detached output, its gradient filled by the head
    Tensor[] layerInputs; // with gradient checkpointing: each layer's input, without autograd
    long stepSeed;
    int globalMb;

    void close() {
      for (Tensor t : new Tensor[] {input, output, top}) if (t != null) t.close();
      if (layerInputs != null) for (Tensor t : layerInputs) if (t != null) t.close();
    }
  }

  /**
   * Microbatch {@code mb} (of {@code count} in this replica) of step {@code step} through this
   * stage; its tensors for the backward come back to the caller, who hands them to {@link
   * #backward}. On the last stage the head's loss (times {@code weight}) is added to {@code
   * loss[0]} and its backward runs at once.
   */
  Micro forward(
      CausalLm m,
      long step,
      int mb,
      int count,
      Batch b,
      double weight,
      long stepSeed,
      double[] loss) {
    Micro out = new Micro();
    int globalMb = rank.replica() * count + mb; // the same dropout masks as on one device
    out.stepSeed = stepSeed;
    out.globalMb = globalMb;
    if (checkpointing) return forwardKeepingInputs(m, step, mb, b, weight, loss, out);
    try (PointerScope scope = new PointerScope()) {
      Tensor h;
      if (stage.hasEmbedding()) {
        h = m.embed(Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen()));
      } else {
        Tensor x = Torch.handOver(transport.receive(previous(), "act/" + step + "/" + mb));
        x.set_requires_grad(true);
        out.input = Torch.keep(x);
        h = x;
      }
      for (int l = 0; l < m.layerCount(); l++) {
        TrainStep.seed(stepSeed, globalMb, stage.firstLayer() + l);
        h = m.forwardLayer(l, h, tensorParallel);
      }
      headOrNext(m, step, mb, b, h, weight, loss, out);
      out.output = Torch.keep(h);
    }
    return out;
  }

  /**
   * The end of a microbatch's forward: on the last stage the head's loss and its backward into a
   * detached copy of {@code h} (kept in {@code out.top}), elsewhere {@code h} sent to the next
   * stage.
   */
  private void headOrNext(
      CausalLm m, long step, int mb, Batch b, Tensor h, double weight, double[] loss, Micro out) {
    if (stage.hasHead()) {
      Tensor top = h.detach();
      top.set_requires_grad(true);
      Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
      loss[0] += TrainStep.headForwardBackward(m, top, labels, weight);
      out.top = Torch.keep(top);
    } else {
      transport.send(next(), "act/" + step + "/" + mb, h);
    }
  }

  /**
   * The forward of gradient checkpointing: no autograd graph; each layer's input is kept for the
   * backward, which computes the layer again.
   */
  private Micro forwardKeepingInputs(
      CausalLm m, long step, int mb, Batch b, double weight, double[] loss, Micro out) {
    out.layerInputs = new Tensor[m.layerCount()];
    try (PointerScope scope = new PointerScope()) {
      Tensor h;
      try (NoGradGuard noGrad = new NoGradGuard()) {
        h =
            stage.hasEmbedding()
                ? m.embed(Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen()))
                : Torch.handOver(transport.receive(previous(), "act/" + step + "/" + mb));
        for (int l = 0; l < m.layerCount(); l++) {
          out.layerInputs[l] = Torch.keep(h);
          TrainStep.seed(out.stepSeed, out.globalMb, stage.firstLayer() + l);
          h = m.forwardLayer(l, h, tensorParallel);
        }
      }
      headOrNext(m, step, mb, b, h, weight, loss, out);
    }
    return out;
  }

  /**
   * The backward of gradient checkpointing: from the top, each layer computed again from its kept
   * input (same seed, so the same dropout masks) and its backward with the gradient from above; the
   * gradient of the stage's input goes to the stage before.
   */
  private void backwardRecomputing(CausalLm m, long step, int mb, Micro micro) {
    Tensor grad =
        stage.hasHead()
            ? micro.top.grad()
            : Torch.handOver(transport.receive(next(), "grad/" + step + "/" + mb));
    boolean owned = false; // grad from a layer below the top is this method's to close
    for (int l = m.layerCount() - 1; l >= 0; l--) {
      boolean inputGrad = l > 0 || !stage.hasEmbedding(); // the embedding is frozen
      Tensor below = null;
      try (PointerScope layerScope = new PointerScope()) {
        Tensor x = micro.layerInputs[l].detach();
        if (inputGrad) x.set_requires_grad(true);
        TrainStep.seed(micro.stepSeed, micro.globalMb, stage.firstLayer() + l);
        Tensor y = m.forwardLayer(l, x, tensorParallel);
        y.backward(grad, new BoolOptional(), false, new TensorArrayRefOptional());
        // x.grad() is a reference into x, which this scope frees: take a handle of its own
        if (inputGrad) below = Torch.keep(x.grad().detach());
      }
      if (owned) grad.close();
      grad = below;
      owned = true;
    }
    if (!stage.hasEmbedding()) transport.send(previous(), "grad/" + step + "/" + mb, grad);
    if (owned && grad != null) grad.close();
  }

  /**
   * The backward of microbatch {@code mb}, freeing {@code micro}'s tensors; nothing but the freeing
   * where {@code weight} is 0 (a step without label tokens).
   */
  void backward(CausalLm m, long step, int mb, Micro micro, double weight) {
    if (micro.layerInputs != null) {
      try (PointerScope scope = new PointerScope()) {
        if (weight > 0) backwardRecomputing(m, step, mb, micro);
      } finally {
        micro.close();
      }
      return;
    }
    try (PointerScope scope = new PointerScope()) {
      if (weight > 0) {
        Tensor grad =
            stage.hasHead()
                ? micro.top.grad()
                : Torch.handOver(transport.receive(next(), "grad/" + step + "/" + mb));
        micro.output.backward(grad, new BoolOptional(), false, new TensorArrayRefOptional());
        if (!stage.hasEmbedding())
          transport.send(previous(), "grad/" + step + "/" + mb, micro.input.grad());
      }
    } finally {
      micro.close();
    }
  }

  private int previous() {
    return plan.rankOf(rank.stage() - 1, rank.shard(), rank.replica());
  }

  private int next() {
    return plan.rankOf(rank.stage() + 1, rank.shard(), rank.replica());
  }
}
