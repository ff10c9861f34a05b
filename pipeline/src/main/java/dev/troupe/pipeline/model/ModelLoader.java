package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.NativeHeap;
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
import java.util.function.Function;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;

/** Builds a {@link CausalLm} stage and shard from Hugging Face weight names. */
final class ModelLoader {
  private final ModelConfig c;
  private final WeightReader reader;
  private final WeightReader adapterReader;
  private final ComputeDtype dtype;
  private final ShardSpec shard;
  private final PeftAdapter adapter;
  private final Function<LoraKey, QuantFormat> quantization;
  private final WeightReader fp32Reader;

  ModelLoader(
      ModelConfig c,
      TensorSource weights,
      ComputeDtype dtype,
      ShardSpec shard,
      PeftAdapter adapter,
      Function<LoraKey, QuantFormat> quantization)
      throws ModelFormatException {
    shard.validate(c);
    if (adapter != null) adapter.validate(c);
    this.c = c;
    this.quantization = quantization == null ? k -> QuantFormat.NONE : quantization;
    // quantized layers are quantized from FP32 values, not from values already rounded to dtype
    this.fp32Reader = new WeightReader(weights, ComputeDtype.FP32);
    this.reader = new WeightReader(weights, dtype);
    this.adapterReader = adapter == null ? null : new WeightReader(adapter.weights(), dtype);
    this.dtype = dtype;
    this.shard = shard;
    this.adapter = adapter;
  }

  CausalLm load(StageSpec stage) throws ModelFormatException {
    if (stage.endLayer() > c.numLayers()) {
      throw new IllegalArgumentException(
          "stage " + stage + " beyond the model's " + c.numLayers() + " layers");
    }
    List<AutoCloseable> made = new ArrayList<>();
    try {
      Tensor embedding = null;
      QuantizedTensor embeddingCodes = null;
      if (stage.hasEmbedding() && int8Embedding()) {
        try (PointerScope scope = new PointerScope()) {
          embeddingCodes =
              QuantizedTensor.quantize(
                  fp32Reader.read("model.embed_tokens.weight", c.vocabSize(), c.hiddenSize()),
                  QuantFormat.INT8);
        }
        made.add(embeddingCodes);
      } else if (stage.hasEmbedding()) {
        embedding =
            keep(reader.read("model.embed_tokens.weight", c.vocabSize(), c.hiddenSize()), made);
      }
      List<DecoderLayer> layers = new ArrayList<>();
      for (int i = stage.firstLayer(); i < stage.endLayer(); i++) {
        DecoderLayer layer = layer(i);
        made.add(layer);
        layers.add(layer);
      }
      RmsNorm norm = null;
      Tensor head = null;
      if (stage.hasHead()) {
        norm =
            new RmsNorm(
                keep(reader.read("model.norm.weight", c.hiddenSize()), made), c.rmsNormEps());
        if (!c.tieWordEmbeddings()) {
          head = keep(reader.read("lm_head.weight", c.vocabSize(), c.hiddenSize()), made);
        } else if (embedding != null) {
          head = embedding;
        } else {
          head =
              keep(reader.read("model.embed_tokens.weight", c.vocabSize(), c.hiddenSize()), made);
        }
      }
      // Loading freed many large temporaries (file reads, FP32 copies for quantization); give
      // the pages glibc keeps for reuse back to the system before training allocates its own.
      NativeHeap.trim();
      return new CausalLm(c, dtype, stage, shard, embedding, embeddingCodes, layers, norm, head);
    } catch (ModelFormatException | RuntimeException e) {
      for (AutoCloseable m : made) {
        try {
          m.close();
        } catch (Exception ignored) {
          // already failing; the first error is the one to report
        }
      }
      throw e;
    }
  }

  private DecoderLayer layer(int i) throws ModelFormatException {
    String p = "model.layers." + i + ".";
    long h = c.hiddenSize();
    long qOut = (long) c.numHeads() * c.headDim();
    long kvOut = (long) c.numKvHeads() * c.headDim();
    long inter = c.intermediateSize();
    Linear q = column(p + "self_attn.q_proj", qOut, h, c.qkvBias(), i, LoraTarget.Q_PROJ);
    Linear k = column(p + "self_attn.k_proj", kvOut, h, c.qkvBias(), i, LoraTarget.K_PROJ);
    Linear v = column(p + "self_attn.v_proj", kvOut, h, c.qkvBias(), i, LoraTarget.V_PROJ);
    Linear o = row(p + "self_attn.o_proj", h, qOut, i, LoraTarget.O_PROJ);
    Tensor oBias = c.oBias() ? Torch.keep(reader.read(p + "self_attn.o_proj.bias", h)) : null;
    Attention attn =
        new Attention(
            q,
            k,
            v,
            o,
            oBias,
            c.numHeads() / shard.size(),
            c.numKvHeads() / shard.size(),
            c.headDim());
    Linear gate = column(p + "mlp.gate_proj", inter, h, c.mlpBias(), i, LoraTarget.GATE_PROJ);
    Linear up = column(p + "mlp.up_proj", inter, h, c.mlpBias(), i, LoraTarget.UP_PROJ);
    Linear down = row(p + "mlp.down_proj", h, inter, i, LoraTarget.DOWN_PROJ);
    Tensor downBias = c.mlpBias() ? Torch.keep(reader.read(p + "mlp.down_proj.bias", h)) : null;
    Mlp mlp = new Mlp(gate, up, down, downBias);
    return new DecoderLayer(
        new RmsNorm(Torch.keep(reader.read(p + "input_layernorm.weight", h)), c.rmsNormEps()), attn,
        new RmsNorm(
                Torch.keep(reader.read(p + "post_attention_layernorm.weight", h)), c.rmsNormEps()),
            mlp);
  }

  /** A layer whose output rows are split across shards (q/k/v/gate/up). */
  private Linear column(String name, long out, long in, boolean bias, int layer, LoraTarget target)
      throws ModelFormatException {
    long start = shard.start(out);
    long len = shard.length(out);
    Tensor b =
        bias ? Torch.keep(reader.slice(name + ".bias", new long[] {out}, 0, start, len)) : null;
    Linear linear =
        frozen(name, new long[] {out, in}, 0, start, len, b, new LoraKey(layer, target));
    String[] keys = adapter == null ? null : adapter.keys(layer, target);
    if (keys != null) {
      int r = adapter.r();
      Tensor a = Torch.keep(adapterReader.read(keys[0], r, in));
      Tensor bm = Torch.keep(adapterReader.slice(keys[1], new long[] {out, r}, 0, start, len));
      linear.attach(new LoraWeights(a, bm, adapter.scaling()), true);
    }
    return linear;
  }

  /**
   * A layer whose input columns are split across shards (o/down); its bias is added after the
   * all-reduce.
   */
  private Linear row(String name, long out, long in, int layer, LoraTarget target)
      throws ModelFormatException {
    long start = shard.start(in);
    long len = shard.length(in);
    Linear linear =
        frozen(name, new long[] {out, in}, 1, start, len, null, new LoraKey(layer, target));
    String[] keys = adapter == null ? null : adapter.keys(layer, target);
    if (keys != null) {
      int r = adapter.r();
      Tensor a = Torch.keep(adapterReader.slice(keys[0], new long[] {r, in}, 1, start, len));
      Tensor bm = Torch.keep(adapterReader.read(keys[1], out, r));
      linear.attach(new LoraWeights(a, bm, adapter.scaling()), true);
    }
    return linear;
  }

  /** The frozen weight of one linear layer (its shard), dense or quantized as asked. */
  private Linear frozen(
      String name, long[] shape, int dim, long start, long len, Tensor bias, LoraKey key)
      throws ModelFormatException {
    QuantFormat format = quantization.apply(key);
    if (format == QuantFormat.NONE) {
      return new Linear(Torch.keep(reader.slice(name + ".weight", shape, dim, start, len)), bias);
    }
    try (PointerScope scope = new PointerScope()) {
      Tensor dense = fp32Reader.slice(name + ".weight", shape, dim, start, len);
      return new Linear(QuantizedTensor.quantize(dense, format), bias);
    }
  }

  /**
   * Whether the embedding is held as INT8 codes (per row, absmax): where any decoder linear layer
   * starts quantized, unless the embedding is also the head (a tied head multiplies by the whole
   * matrix, so it stays dense in the compute dtype). A lookup dequantizes only the rows it reads.
   */
  private boolean int8Embedding() {
    if (c.tieWordEmbeddings()) return false;
    for (int i = 0; i < c.numLayers(); i++) {
      for (LoraTarget t : LoraTarget.values()) {
        if (quantization.apply(new LoraKey(i, t)) != QuantFormat.NONE) return true;
      }
    }
    return false;
  }

  private static Tensor keep(Tensor t, List<AutoCloseable> made) {
    made.add(t);
    return Torch.keep(t);
  }
}
