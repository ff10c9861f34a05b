package dev.troupe.pipeline.lora;

import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.model.ModelFormatException;
import dev.troupe.pipeline.model.WeightReader;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.safetensors.TensorSource;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The trainable state of LoRA: FP32 master copies of every A [r, in] and B [out, r], with
 * gradients. Models borrow them ({@code CausalLm.lendLora}) and cast them to the compute dtype in
 * each forward, so the optimizer always updates FP32 values.
 */
public final class LoraParameters implements AutoCloseable {
  private final int r;
  private final double alpha;
  private final boolean rslora;
  private final SortedMap<LoraKey, LoraWeights> weights;

  private LoraParameters(
      int r, double alpha, boolean rslora, SortedMap<LoraKey, LoraWeights> weights) {
    this.r = r;
    this.alpha = alpha;
    this.rslora = rslora;
    this.weights = weights;
  }

  /**
   * Fresh adapters as PEFT initialises them: A kaiming-uniform with a = sqrt(5), i.e.
   * U(-1/sqrt(in), 1/sqrt(in)); B zeros, so the adapted model starts equal to the base model. A is
   * drawn with libtorch's generator seeded with {@code seed}, in {@link LoraKey} order.
   */
  public static LoraParameters initialize(
      ModelConfig c, int r, double alpha, Set<LoraTarget> targets, long seed) {
    Torch.init();
    // libtorch's CPU generator is one per process: ranks set up on several threads at once
    // would interleave their draws
    synchronized (Torch.GENERATOR) {
      return initializeSeeded(c, r, alpha, targets, seed);
    }
  }

  private static LoraParameters initializeSeeded(
      ModelConfig c, int r, double alpha, Set<LoraTarget> targets, long seed) {
    torch.manual_seed(seed);
    SortedMap<LoraKey, LoraWeights> w = new TreeMap<>();
    for (int layer = 0; layer < c.numLayers(); layer++) {
      for (LoraTarget t : EnumSet.copyOf(targets)) {
        long[] io = inOut(c, t);
        double bound = 1.0 / Math.sqrt(io[0]);
        Tensor a =
            torch
                .empty(r, io[0])
                .uniform_(-bound, bound, new org.bytedeco.pytorch.GeneratorOptional());
        Tensor b = torch.zeros(io[1], r);
        w.put(new LoraKey(layer, t), trainable(a, b, alpha / r));
      }
    }
    return new LoraParameters(r, alpha, false, w);
  }

  /** FP32 trainable copies of a PEFT adapter's weights, checked against the model's shapes. */
  public static LoraParameters fromAdapter(PeftAdapter adapter, ModelConfig c) throws IOException {
    adapter.validate(c);
    SortedMap<LoraKey, LoraWeights> w = new TreeMap<>();
    for (int layer = 0; layer < c.numLayers(); layer++) {
      for (LoraTarget t : LoraTarget.values()) {
        String[] keys = adapter.keys(layer, t);
        if (keys == null) continue;
        long[] io = inOut(c, t);
        Tensor a = read(adapter, keys[0], new long[] {adapter.r(), io[0]});
        Tensor b = read(adapter, keys[1], new long[] {io[1], adapter.r()});
        w.put(new LoraKey(layer, t), trainable(a, b, adapter.scaling()));
      }
    }
    return new LoraParameters(adapter.r(), adapter.alpha(), adapter.rslora(), w);
  }

  /** Restores values saved by {@link #toTensors} (a checkpoint) into these parameters. */
  public void load(TensorSource source) throws ModelFormatException {
    for (var e : weights.entrySet()) {
      copyInto(
          source, PeftAdapter.key(e.getKey().layer(), e.getKey().target(), 'A'), e.getValue().a());
      copyInto(
          source, PeftAdapter.key(e.getKey().layer(), e.getKey().target(), 'B'), e.getValue().b());
    }
  }

  /**
   * Restores values keyed as {@link #toTensors} keys them, held in memory ({@code where} names them
   * in errors).
   *
   * @throws IOException naming the tensor that is missing or has another shape
   */
  public void load(java.util.Map<String, TensorData> tensors, String where) throws IOException {
    List<Tensor> p = parameters();
    List<String> n = names();
    for (int i = 0; i < p.size(); i++) {
      TensorData d = tensors.get(n.get(i));
      long[] shape = Torch.shape(p.get(i));
      if (d == null) throw new IOException(where + " has no tensor " + n.get(i));
      if (d.dtype() != DType.F32 || !java.util.Arrays.equals(d.shape(), shape)) {
        throw new IOException(
            where
                + ": "
                + n.get(i)
                + " is "
                + d.dtype()
                + java.util.Arrays.toString(d.shape())
                + ", expected F32"
                + java.util.Arrays.toString(shape));
      }
      try (Tensor t = Torch.fromBytes(d.bytes(), DType.F32, shape);
          NoGradGuard noGrad = new NoGradGuard()) {
        p.get(i).copy_(t);
      }
    }
  }

  private static void copyInto(TensorSource source, String name, Tensor target)
      throws ModelFormatException {
    Tensor t = read(source, name, Torch.shape(target));
    // an in-place write into a leaf that requires grad must not be recorded
    try (NoGradGuard noGrad = new NoGradGuard()) {
      target.copy_(t);
    } finally {
      t.close();
    }
  }

  private static Tensor read(PeftAdapter adapter, String name, long[] shape)
      throws ModelFormatException {
    return read(adapter.weights(), name, shape);
  }

  /** An FP32 copy of a named tensor, checked against the shape the model implies. */
  private static Tensor read(TensorSource source, String name, long[] shape)
      throws ModelFormatException {
    return new WeightReader(source, ComputeDtype.FP32).read(name, shape);
  }

  private static LoraWeights trainable(Tensor a, Tensor b, double scaling) {
    a.set_requires_grad(true);
    b.set_requires_grad(true);
    return new LoraWeights(Torch.keep(a), Torch.keep(b), scaling);
  }

  /** [in, out] of a target's linear layer. */
  static long[] inOut(ModelConfig c, LoraTarget t) {
    long h = c.hiddenSize();
    long q = (long) c.numHeads() * c.headDim();
    long kv = (long) c.numKvHeads() * c.headDim();
    long inter = c.intermediateSize();
    return switch (t) {
      case Q_PROJ -> new long[] {h, q};
      case K_PROJ, V_PROJ -> new long[] {h, kv};
      case O_PROJ -> new long[] {q, h};
      case GATE_PROJ, UP_PROJ -> new long[] {h, inter};
      case DOWN_PROJ -> new long[] {inter, h};
    };
  }

  public SortedMap<LoraKey, LoraWeights> weights() {
    return Collections.unmodifiableSortedMap(weights);
  }

  /** Every trainable tensor in optimizer order: LoraKey order, A before B. */
  public List<Tensor> parameters() {
    List<Tensor> out = new ArrayList<>();
    weights
        .values()
        .forEach(
            w -> {
              out.add(w.a());
              out.add(w.b());
            });
    return out;
  }

  /** PEFT key names, parallel to {@link #parameters()}. */
  public List<String> names() {
    List<String> out = new ArrayList<>();
    weights
        .keySet()
        .forEach(
            k -> {
              out.add(PeftAdapter.key(k.layer(), k.target(), 'A'));
              out.add(PeftAdapter.key(k.layer(), k.target(), 'B'));
            });
    return out;
  }

  public Set<LoraTarget> targets() {
    EnumSet<LoraTarget> t = EnumSet.noneOf(LoraTarget.class);
    weights.keySet().forEach(k -> t.add(k.target()));
    return t;
  }

  public int r() {
    return r;
  }

  public double alpha() {
    return alpha;
  }

  /** Number of trainable values. */
  public long count() {
    return parameters().stream().mapToLong(Tensor::numel).sum();
  }

  /** Current values as F32 tensors keyed by PEFT names. */
  public SortedMap<String, TensorData> toTensors() {
    SortedMap<String, TensorData> out = new TreeMap<>();
    List<Tensor> p = parameters();
    List<String> n = names();
    for (int i = 0; i < p.size(); i++) {
      // per step where copies of the state are kept: the detached alias is released at once
      try (Tensor d = p.get(i).detach()) {
        out.put(n.get(i), new TensorData(DType.F32, Torch.shape(d), Torch.toBytes(d)));
      }
    }
    return out;
  }

  /** Writes a PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  public void writePeft(Path dir, double dropout, String baseModel) throws IOException {
    PeftAdapter.write(dir, r, alpha, rslora, dropout, targets(), toTensors(), baseModel);
  }

  @Override
  public void close() {
    weights.values().forEach(LoraWeights::close);
  }
}
