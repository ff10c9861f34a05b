package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.job.OptimizerSettings;
import dev.troupe.pipeline.lora.LoraKey;
import dev.troupe.pipeline.lora.LoraWeights;
import dev.troupe.pipeline.lora.PeftAdapter;
import dev.troupe.pipeline.model.StageSpec;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.train.AdamW;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

/**
 * The trainable state of one stage: the LoRA pairs of its layers (the whole pairs, on every shard)
 * and AdamW over them, and their form in a checkpoint (PEFT names for the pairs, {@code
 * exp_avg.NAME} and {@code exp_avg_sq.NAME} for the moments, as the one-device checkpoint has
 * them).
 */
final class StageState implements AutoCloseable {
  private final SortedMap<LoraKey, LoraWeights> lora = new TreeMap<>();
  private final List<Tensor> params = new ArrayList<>();
  private final AdamW optimizer;

  /** The pairs of {@code all} (the whole model's) in {@code stage}'s layers, with a new AdamW. */
  StageState(Map<LoraKey, LoraWeights> all, StageSpec stage, OptimizerSettings o) {
    all.forEach(
        (k, w) -> {
          if (k.layer() >= stage.firstLayer() && k.layer() < stage.endLayer()) {
            lora.put(k, w);
          }
        });
    lora.values()
        .forEach(
            w -> {
              params.add(w.a());
              params.add(w.b());
            });
    this.optimizer = new AdamW(params, o.beta1(), o.beta2(), o.eps(), o.weightDecay());
  }

  SortedMap<LoraKey, LoraWeights> lora() {
    return lora;
  }

  /** A then B of every pair, in key order: AdamW's parameters. */
  List<Tensor> params() {
    return params;
  }

  AdamW optimizer() {
    return optimizer;
  }

  /** This stage's LoRA pairs as F32 tensors under their PEFT names. */
  SortedMap<String, TensorData> adapterTensors() {
    SortedMap<String, TensorData> out = new TreeMap<>();
    lora.forEach(
        (k, w) -> {
          out.put(PeftAdapter.key(k.layer(), k.target(), 'A'), data(w.a()));
          out.put(PeftAdapter.key(k.layer(), k.target(), 'B'), data(w.b()));
        });
    return out;
  }

  private static TensorData data(Tensor t) {
    try (Tensor d = t.detach()) {
      return new TensorData(DType.F32, Torch.shape(d), Torch.toBytes(d));
    }
  }

  /**
   * What a checkpoint keeps of this stage, under the names the one-device checkpoint uses: the LoRA
   * pairs (PEFT names) and AdamW's moments ({@code exp_avg.NAME}, {@code exp_avg_sq.NAME}).
   */
  SortedMap<String, TensorData> state() {
    SortedMap<String, TensorData> out = adapterTensors();
    List<String> names = names();
    for (int i = 0; i < names.size(); i++) {
      out.put("exp_avg." + names.get(i), data(optimizer.expAvg().get(i)));
      out.put("exp_avg_sq." + names.get(i), data(optimizer.expAvgSq().get(i)));
    }
    return out;
  }

  /**
   * Restores this stage's LoRA pairs and moments from {@code tensors} (a checkpoint's, keyed as
   * {@link #state} writes them; other stages' entries are ignored).
   *
   * @throws IllegalArgumentException naming the tensor that is missing or has the wrong shape
   */
  void restore(java.util.Map<String, TensorData> tensors, long optimizerStep) {
    List<String> names = names();
    List<Tensor> m = new ArrayList<>();
    List<Tensor> v = new ArrayList<>();
    try (NoGradGuard noGrad = new NoGradGuard()) {
      for (int i = 0; i < names.size(); i++) {
        Tensor p = params.get(i);
        try (Tensor t = tensor(tensors, names.get(i), p)) {
          p.copy_(t);
        }
        m.add(tensor(tensors, "exp_avg." + names.get(i), p));
        v.add(tensor(tensors, "exp_avg_sq." + names.get(i), p));
      }
      optimizer.restore(m, v, optimizerStep);
    } finally {
      m.forEach(Tensor::close);
      v.forEach(Tensor::close);
    }
  }

  private static Tensor tensor(
      java.util.Map<String, TensorData> tensors, String name, Tensor like) {
    TensorData d = tensors.get(name);
    if (d == null) throw new IllegalArgumentException("checkpoint state has no tensor " + name);
    if (!java.util.Arrays.equals(d.shape(), Torch.shape(like)) || d.dtype() != DType.F32) {
      throw new IllegalArgumentException(
          "checkpoint tensor "
              + name
              + " is "
              + d.dtype()
              + java.util.Arrays.toString(d.shape())
              + ", expected F32"
              + java.util.Arrays.toString(Torch.shape(like)));
    }
    return Torch.fromBytes(d.bytes(), DType.F32, d.shape());
  }

  /** PEFT names of {@link #params}, in order. */
  private List<String> names() {
    List<String> out = new ArrayList<>();
    for (LoraKey k : lora.keySet()) {
      out.add(PeftAdapter.key(k.layer(), k.target(), 'A'));
      out.add(PeftAdapter.key(k.layer(), k.target(), 'B'));
    }
    return out;
  }

  @Override
  public void close() {
    optimizer.close();
  }
}
