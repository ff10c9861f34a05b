package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.BlasThreads;
import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraKey;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.lora.LoraWeights;
import dev.troupe.pipeline.lora.PeftAdapter;
import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantizedTensor;
import dev.troupe.pipeline.safetensors.TensorSource;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * A LLaMA-family causal language model, or one pipeline stage and tensor shard of it, on libtorch.
 * The stage seams are {@link #embed}, {@link #forwardLayers} and {@link #logits}: the first stage
 * embeds token ids, every stage runs its decoder layers on hidden states, the last applies the
 * final norm and the output head. The tensor-parallel seam is the {@link AllReduce} passed to
 * {@link #forwardLayers}.
 */
public final class CausalLm implements AutoCloseable {
  private final ModelConfig config;
  private final ComputeDtype dtype;
  private final StageSpec stage;
  private final ShardSpec shard;
  private final Tensor embedding;
  private final QuantizedTensor embeddingCodes; // instead of embedding, where it is held INT8
  private final List<DecoderLayer> layers;
  private final RmsNorm finalNorm;
  private final Tensor head;

  CausalLm(
      ModelConfig config,
      ComputeDtype dtype,
      StageSpec stage,
      ShardSpec shard,
      Tensor embedding,
      QuantizedTensor embeddingCodes,
      List<DecoderLayer> layers,
      RmsNorm finalNorm,
      Tensor head) {
    this.config = config;
    this.dtype = dtype;
    this.stage = stage;
    this.shard = shard;
    this.embedding = embedding;
    this.embeddingCodes = embeddingCodes;
    this.layers = layers;
    this.finalNorm = finalNorm;
    this.head = head;
  }

  /** Loads the whole model, optionally with a PEFT adapter applied. */
  public static CausalLm load(HfModel model, ComputeDtype dtype, PeftAdapter adapter)
      throws ModelFormatException {
    return load(model, dtype, adapter, null);
  }

  /**
   * Loads the whole model, optionally with a PEFT adapter applied, each decoder linear layer held
   * as {@code quantization} says ({@code null}: none quantized).
   */
  public static CausalLm load(
      HfModel model,
      ComputeDtype dtype,
      PeftAdapter adapter,
      Function<LoraKey, QuantFormat> quantization)
      throws ModelFormatException {
    return load(
        model.config(),
        model.weights(),
        dtype,
        StageSpec.full(model.config()),
        ShardSpec.NONE,
        adapter,
        quantization);
  }

  /** Loads one stage and shard of the model; only its weights are read. */
  public static CausalLm load(
      ModelConfig config,
      TensorSource weights,
      ComputeDtype dtype,
      StageSpec stage,
      ShardSpec shard,
      PeftAdapter adapter)
      throws ModelFormatException {
    return load(config, weights, dtype, stage, shard, adapter, null);
  }

  /**
   * Loads one stage and shard with the frozen weight of each decoder linear layer held as {@code
   * quantization} says ({@code null}: none quantized). Where any layer starts quantized, an
   * embedding that is not tied to the head is held INT8 (per row); norms and head stay in {@code
   * dtype}.
   */
  public static CausalLm load(
      ModelConfig config,
      TensorSource weights,
      ComputeDtype dtype,
      StageSpec stage,
      ShardSpec shard,
      PeftAdapter adapter,
      Function<LoraKey, QuantFormat> quantization)
      throws ModelFormatException {
    BlasThreads.size(dtype);
    return new ModelLoader(config, weights, dtype, shard, adapter, quantization).load(stage);
  }

  /**
   * Makes every weight of this stage trainable (full fine-tuning, the benchmark's baseline) and
   * returns them: embedding, each layer's norms, linear weights and biases, the final norm and the
   * head (once where tied). Needs dense weights; an adapter is not trained alongside.
   */
  public List<Tensor> trainAllWeights() {
    if (embeddingCodes != null) {
      throw new IllegalStateException("full fine-tuning needs a dense embedding, not INT8 codes");
    }
    List<Tensor> params = new ArrayList<>();
    if (embedding != null) params.add(embedding);
    for (DecoderLayer layer : layers) {
      params.add(layer.inputNorm.weight());
      params.add(layer.postAttentionNorm.weight());
      for (LoraTarget t : LoraTarget.values()) params.addAll(layer.linear(t).denseParameters());
      if (layer.attention.oBias() != null) params.add(layer.attention.oBias());
      if (layer.mlp.downBias() != null) params.add(layer.mlp.downBias());
    }
    if (finalNorm != null) params.add(finalNorm.weight());
    if (head != null && head != embedding) params.add(head);
    for (Tensor p : params) p.set_requires_grad(true);
    return params;
  }

  /** How the frozen weight of a linear layer (global layer index) is held. */
  public QuantFormat format(LoraKey key) {
    return linear(key).format();
  }

  /** Bytes held by the frozen weights of the decoder linear layers, embedding and head. */
  public long frozenWeightBytes() {
    long bytes = 0;
    for (DecoderLayer layer : layers) {
      for (LoraTarget t : LoraTarget.values()) bytes += layer.linear(t).weightBytes();
    }
    if (embedding != null) bytes += embedding.nbytes();
    if (embeddingCodes != null) bytes += embeddingCodes.bytes();
    if (head != null && head != embedding) bytes += head.nbytes();
    return bytes;
  }

  /**
   * Replaces the frozen weight of one linear layer with {@code dense} (its values for this shard,
   * any float dtype), held as {@code format}; {@code dense} is not kept.
   */
  public void requantize(LoraKey key, Tensor dense, QuantFormat format) {
    try (PointerScope scope = new PointerScope()) {
      Tensor w = format == QuantFormat.NONE ? dense.to(dtype.scalarType()) : dense;
      linear(key).requantize(w, format);
    }
  }

  /**
   * The frozen weight of one linear layer as held, as a new tensor in {@code dtype}, freed with the
   * caller's innermost open scope.
   */
  public Tensor heldWeight(LoraKey key, ScalarType dtype) {
    Tensor out;
    try (PointerScope scope = new PointerScope()) {
      out = Torch.keep(linear(key).weight(dtype).clone());
    }
    return Torch.handOver(out);
  }

  /** Bytes the frozen weight of one linear layer holds. */
  public long weightBytes(LoraKey key) {
    return linear(key).weightBytes();
  }

  private Linear linear(LoraKey key) {
    int local = key.layer() - stage.firstLayer();
    if (local < 0 || local >= layers.size()) {
      throw new IllegalArgumentException("layer " + key.layer() + " is not in stage " + stage);
    }
    return layers.get(local).linear(key.target());
  }

  /**
   * Runs this stage's layers from {@code hidden} (tensor-parallel reduces through {@code reduce})
   * and hands the input every linear layer sees to {@code sink} (layer, input); for calibration.
   * The inputs are freed after {@code sink} returns. Returns the stage's output, freed with the
   * caller's innermost open scope.
   */
  public Tensor captureLinearInputs(
      Tensor hidden, AllReduce reduce, java.util.function.BiConsumer<LoraKey, Tensor> sink) {
    long seq = hidden.size(1);
    Rotary rope = Rotary.of(config, seq, dtype.scalarType());
    Tensor mask = slidingWindowMask(seq);
    Tensor h = hidden;
    boolean owned = false;
    for (int i = 0; i < layers.size(); i++) {
      DecoderLayer layer = layers.get(i);
      int global = stage.firstLayer() + i;
      Tensor next;
      try (PointerScope scope = new PointerScope()) {
        next =
            Torch.keep(
                layer.forwardCapturing(
                    h, rope, mask, reduce, (t, x) -> sink.accept(new LoraKey(global, t), x)));
      }
      if (owned) h.close();
      h = next;
      owned = true;
    }
    return owned ? Torch.handOver(h) : hidden;
  }

  public ModelConfig config() {
    return config;
  }

  public ComputeDtype dtype() {
    return dtype;
  }

  public StageSpec stage() {
    return stage;
  }

  public ShardSpec shard() {
    return shard;
  }

  /**
   * Lends trainable LoRA weights to this stage's layers (keys use global layer indices; keys of
   * other stages are ignored). The caller keeps owning them; {@code dropout} applies to the adapter
   * input on every forward until {@link #returnLora}.
   */
  public void lendLora(Map<LoraKey, LoraWeights> weights, double dropout) {
    for (Map.Entry<LoraKey, LoraWeights> e : weights.entrySet()) {
      int local = e.getKey().layer() - stage.firstLayer();
      if (local < 0 || local >= layers.size()) continue;
      Linear linear = layers.get(local).linear(e.getKey().target());
      LoraWeights w = e.getValue();
      linear.dropout(dropout);
      if (shard.isSharded()) {
        linear.attach(shardOf(w, e.getKey().target()), true);
        if (!e.getKey().target().columnParallel()) {
          long in = w.a().size(1);
          linear.dropout(dropout, shard.start(in), in);
        }
      } else {
        linear.attach(w, false);
      }
    }
  }

  /**
   * This shard's part of a whole LoRA pair, as views into it (so gradients reach the whole pair,
   * zero outside the shard's part): B's rows of a column-parallel layer, A's columns of a
   * row-parallel one; the other factor whole. Owned by the layer (closing a view frees only the
   * view). Dropout on a row-parallel layer's input draws the whole layer's mask and applies this
   * shard's part of it.
   */
  private LoraWeights shardOf(LoraWeights w, LoraTarget target) {
    Tensor a;
    Tensor b;
    if (target.columnParallel()) {
      long out = w.b().size(0);
      a = w.a().alias();
      b = w.b().narrow(0, shard.start(out), shard.length(out));
    } else {
      long in = w.a().size(1);
      a = w.a().narrow(1, shard.start(in), shard.length(in));
      b = w.b().alias();
    }
    return new LoraWeights(Torch.keep(a), Torch.keep(b), w.scaling());
  }

  /** Detaches every LoRA pair from this stage's layers (lent ones are not closed). */
  public void returnLora() {
    for (DecoderLayer layer : layers) {
      for (LoraTarget t : LoraTarget.values()) {
        layer.linear(t).detach();
        layer.linear(t).dropout(0);
      }
    }
  }

  /** Token ids [batch, seq] (int64) to hidden states [batch, seq, hidden]; first stage only. */
  public Tensor embed(Tensor ids) {
    if (embeddingCodes != null) return embeddingCodes.rows(ids, dtype.scalarType());
    if (embedding == null) throw new IllegalStateException("this stage holds no embedding");
    return torch.embedding(embedding, ids);
  }

  /**
   * Runs this stage's decoder layers on hidden states [batch, seq, hidden] at positions 0..seq-1.
   */
  public Tensor forwardLayers(Tensor hidden, AllReduce reduce) {
    long seq = hidden.size(1);
    Rotary rope = Rotary.of(config, seq, dtype.scalarType());
    Tensor mask = slidingWindowMask(seq);
    // One scope per layer: only its output survives it. (Under autograd the graph still keeps
    // what backward needs; without one, this bounds the memory to about one layer's activations.)
    Tensor h = hidden;
    boolean owned = false;
    for (DecoderLayer layer : layers) {
      Tensor next;
      try (PointerScope scope = new PointerScope()) {
        next = Torch.keep(layer.forward(h, rope, mask, reduce));
      }
      if (owned) h.close();
      h = next;
      owned = true;
    }
    return owned ? Torch.handOver(h) : h;
  }

  /**
   * What serves FP32 products on the CPU: {@code onednn} (the default) or {@code blas}, as {@code
   * TROUPE_FP32_PRODUCTS} chose and this libtorch allows.
   */
  public static String fp32Products() {
    return Kernels.fp32Products();
  }

  /**
   * Frees what forwards on this thread kept for hand-written backward passes ({@code
   * HookedBackward}: attention, SwiGLU) that never ran (a step without label tokens, an exception
   * part way). Call between steps, where no autograd graph made on this thread is alive; the
   * trainers do at the start of each step.
   */
  public static void releaseUnfinishedBackwards() {
    HookedBackward.releaseAll();
  }

  /** Number of decoder layers this stage holds. */
  public int layerCount() {
    return layers.size();
  }

  /**
   * Runs this stage's {@code index}-th decoder layer alone (0 = its first). The trainer drives
   * layers one at a time where it needs to: per-layer random seeds for dropout, and recomputing a
   * layer in the backward pass (gradient checkpointing).
   */
  public Tensor forwardLayer(int index, Tensor hidden, AllReduce reduce) {
    long seq = hidden.size(1);
    Tensor out;
    try (PointerScope scope = new PointerScope()) {
      // only the output leaves: the layer's intermediates are freed here (or kept by autograd)
      out =
          Torch.keep(
              layers
                  .get(index)
                  .forward(
                      hidden,
                      Rotary.of(config, seq, dtype.scalarType()),
                      slidingWindowMask(seq),
                      reduce));
    }
    return Torch.handOver(out);
  }

  /** Whether this stage holds the output head and its weights are trained. */
  public boolean headTrained() {
    return head != null && head.requires_grad();
  }

  /**
   * Final norm and output head: hidden states to float32 logits [batch, seq, vocab]; last stage
   * only.
   */
  public Tensor logits(Tensor hidden) {
    return headLogits(finalNormed(hidden));
  }

  /** The final norm of hidden states (last stage only): the head's input. */
  public Tensor finalNormed(Tensor hidden) {
    if (head == null) throw new IllegalStateException("this stage holds no output head");
    return finalNorm.forward(hidden);
  }

  /** The head's float32 logits of {@link #finalNormed} hidden states. */
  public Tensor headLogits(Tensor normed) {
    if (head == null) throw new IllegalStateException("this stage holds no output head");
    Tensor out = Kernels.linear(normed, head, null);
    if (out.scalar_type().value == ScalarType.Float.value) return out;
    Tensor logits = out.to(ScalarType.Float);
    out.close(); // freed now, not with the caller's scope (autograd keeps its own reference)
    return logits;
  }

  /**
   * The gradient of the head's input for the gradient of its float32 logits, as autograd forms it
   * through {@link #headLogits}: rounded to the head's input dtype, then times the head's weight.
   */
  public Tensor headInputGradient(Tensor gradLogits, ScalarType inputDtype) {
    if (head == null) throw new IllegalStateException("this stage holds no output head");
    Tensor g =
        gradLogits.scalar_type().value == inputDtype.value ? gradLogits : gradLogits.to(inputDtype);
    return Kernels.matmul(g, head);
  }

  /**
   * The whole forward pass: token ids [batch, seq] to float32 logits [batch, seq, vocab]. Every
   * intermediate tensor is freed before this returns; the caller owns (and closes) the result.
   */
  public Tensor forward(Tensor ids) {
    if (!stage.hasEmbedding() || !stage.hasHead() || shard.isSharded()) {
      throw new IllegalStateException(
          "forward(ids) needs the whole model; use embed/forwardLayers/logits per stage");
    }
    try (PointerScope scope = new PointerScope()) {
      return Torch.keep(logits(forwardLayers(embed(ids), AllReduce.NONE)));
    }
  }

  /**
   * Mistral's sliding window as a boolean mask (true = may attend), or null where plain causal
   * suffices.
   */
  private Tensor slidingWindowMask(long seq) {
    int w = config.slidingWindow();
    if (w <= 0 || seq <= w) return null;
    Tensor i = torch.arange(Torch.scalar(seq)).unsqueeze(1);
    Tensor j = torch.arange(Torch.scalar(seq)).unsqueeze(0);
    // key j visible to query i iff i - w < j <= i
    return torch.logical_and(torch.le(j, i), torch.gt(j, i.sub(Torch.scalar(w))));
  }

  @Override
  public void close() {
    if (embedding != null) embedding.close();
    if (embeddingCodes != null) embeddingCodes.close();
    layers.forEach(DecoderLayer::close);
    if (finalNorm != null) finalNorm.close();
    if (head != null && head != embedding) head.close();
  }
}
