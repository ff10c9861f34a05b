package dev.troupe.pipeline.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.io.AtomicFile;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.SafetensorsWriter;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.tokenizer.ByteLevelBpeTokenizerWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Writes a randomly initialised model in Hugging Face layout: {@code config.json}, {@code
 * model.safetensors} (or shards with an index), {@code generation_config.json} and a byte-level BPE
 * {@code tokenizer.json}.
 *
 * <p>Weights come from libtorch's generator seeded with {@code seed}, drawn in the sorted order of
 * their names, so PyTorch with {@code torch.manual_seed(seed)} draws the same numbers. Linear
 * weights and the embedding are N(0, std) with transformers' LLaMA default std 0.02; norm weights
 * are 1 + N(0, 0.1) and biases N(0, std) rather than constants, so that a test exercises every
 * parameter.
 */
public final class RandomInit {
  private final ModelConfig config;
  private long seed = 0;
  private double std = 0.02;
  private double headStd = Double.NaN;
  private DType storage = DType.F32;
  private long maxShardBytes = 0;
  private String preset = "custom";

  public RandomInit(ModelConfig config) {
    this.config = config;
  }

  public RandomInit seed(long seed) {
    this.seed = seed;
    return this;
  }

  /** Standard deviation of linear and embedding weights. */
  public RandomInit std(double std) {
    this.std = std;
    return this;
  }

  /**
   * Standard deviation of the output head ({@code lm_head.weight}) alone; by default {@link #std}.
   * A small model's logits are at most about {@code hidden · headStd} apart once its final norm has
   * scaled the hidden state to length {@code √hidden}, so 0.02 at hidden 128 keeps them within
   * about 2.6 of each other however the layers train.
   */
  public RandomInit headStd(double std) {
    this.headStd = std;
    return this;
  }

  /** F32, F16 or BF16 on disk. */
  public RandomInit storage(DType storage) {
    if (storage != DType.F32 && storage != DType.F16 && storage != DType.BF16) {
      throw new IllegalArgumentException("weights are stored as F32, F16 or BF16, not " + storage);
    }
    this.storage = storage;
    return this;
  }

  /** The preset name recorded in config.json's {@code troupe_init}. */
  public RandomInit preset(String name) {
    this.preset = name;
    return this;
  }

  /** Splits the weights into shards of at most this many bytes (0 = one file). */
  public RandomInit maxShardBytes(long bytes) {
    this.maxShardBytes = bytes;
    return this;
  }

  /** Writes the folder (created if absent); existing model files in it are replaced. */
  public void write(Path dir) throws IOException {
    Files.createDirectories(dir);
    SortedMap<String, TensorData> tensors = new TreeMap<>();
    SortedMap<String, long[]> shapes = shapes();
    Torch.init();
    torch.manual_seed(seed);
    for (Map.Entry<String, long[]> e : shapes.entrySet()) {
      try (PointerScope scope = new PointerScope()) {
        String name = e.getKey();
        Tensor t = torch.randn(e.getValue());
        if (name.endsWith("norm.weight")) {
          t = t.mul(Torch.scalar(0.1)).add(Torch.scalar(1.0));
        } else if (name.equals("lm_head.weight") && !Double.isNaN(headStd)) {
          t = t.mul(Torch.scalar(headStd));
        } else {
          t = t.mul(Torch.scalar(std));
        }
        tensors.put(
            name,
            new TensorData(storage, e.getValue(), Torch.toBytes(t.to(Torch.scalarType(storage)))));
      }
    }
    if (maxShardBytes > 0) {
      SafetensorsWriter.writeSharded(dir, "model", tensors, maxShardBytes);
    } else {
      SafetensorsWriter.write(dir.resolve("model.safetensors"), tensors, Map.of("format", "pt"));
    }
    ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    var cfg = config.toJson();
    cfg.put(
        "torch_dtype",
        switch (storage) {
          case BF16 -> "bfloat16";
          case F16 -> "float16";
          default -> "float32";
        });
    // How the weights came about; transformers keeps unknown keys as plain attributes.
    cfg.set("troupe_init", provenance());
    AtomicFile.write(dir.resolve("config.json"), json.writeValueAsBytes(cfg));
    var gen = json.createObjectNode();
    if (config.bosTokenId() >= 0) gen.put("bos_token_id", config.bosTokenId());
    config.eosTokenIds().forEach(gen.withArray("eos_token_id")::add);
    AtomicFile.write(dir.resolve("generation_config.json"), json.writeValueAsBytes(gen));
    if (config.vocabSize() >= ByteLevelBpeTokenizerWriter.MIN_VOCAB) {
      ByteLevelBpeTokenizerWriter.write(
          dir.resolve("tokenizer.json"),
          config.vocabSize(),
          ByteLevelBpeTokenizerWriter.defaultTrainingText());
    }
  }

  /**
   * What {@link #write} records in config.json as {@code troupe_init}: the preset, seed, std and
   * storage dtype, so that the same request can be recognised later.
   */
  public ObjectNode provenance() {
    ObjectNode o = new ObjectMapper().createObjectNode();
    o.put("preset", preset);
    o.put("seed", seed);
    o.put("std", std);
    if (!Double.isNaN(headStd)) o.put("head_std", headStd);
    o.put("weights_dtype", storage.code());
    return o;
  }

  /** Every weight of the architecture with its shape, sorted by name. */
  SortedMap<String, long[]> shapes() {
    ModelConfig c = config;
    long h = c.hiddenSize();
    long q = (long) c.numHeads() * c.headDim();
    long kv = (long) c.numKvHeads() * c.headDim();
    long inter = c.intermediateSize();
    SortedMap<String, long[]> s = new TreeMap<>();
    s.put("model.embed_tokens.weight", new long[] {c.vocabSize(), h});
    s.put("model.norm.weight", new long[] {h});
    if (!c.tieWordEmbeddings()) s.put("lm_head.weight", new long[] {c.vocabSize(), h});
    for (int i = 0; i < c.numLayers(); i++) {
      String p = "model.layers." + i + ".";
      s.put(p + "input_layernorm.weight", new long[] {h});
      s.put(p + "post_attention_layernorm.weight", new long[] {h});
      s.put(p + "self_attn.q_proj.weight", new long[] {q, h});
      s.put(p + "self_attn.k_proj.weight", new long[] {kv, h});
      s.put(p + "self_attn.v_proj.weight", new long[] {kv, h});
      s.put(p + "self_attn.o_proj.weight", new long[] {h, q});
      s.put(p + "mlp.gate_proj.weight", new long[] {inter, h});
      s.put(p + "mlp.up_proj.weight", new long[] {inter, h});
      s.put(p + "mlp.down_proj.weight", new long[] {h, inter});
      if (c.qkvBias()) {
        s.put(p + "self_attn.q_proj.bias", new long[] {q});
        s.put(p + "self_attn.k_proj.bias", new long[] {kv});
        s.put(p + "self_attn.v_proj.bias", new long[] {kv});
      }
      if (c.oBias()) s.put(p + "self_attn.o_proj.bias", new long[] {h});
      if (c.mlpBias()) {
        s.put(p + "mlp.gate_proj.bias", new long[] {inter});
        s.put(p + "mlp.up_proj.bias", new long[] {inter});
        s.put(p + "mlp.down_proj.bias", new long[] {h});
      }
    }
    return s;
  }
}
