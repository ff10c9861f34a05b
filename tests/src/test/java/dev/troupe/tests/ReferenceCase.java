package dev.troupe.tests;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.lora.PeftAdapter;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.model.RandomInit;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.EnumSet;
import java.util.HexFormat;
import java.util.List;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * One tiny model that the numerics tests compare against the Hugging Face reference: an
 * architecture variant, how its weights are stored, and optionally a PEFT adapter.
 */
record ReferenceCase(
    String name, ModelConfig config, DType storage, long maxShardBytes, boolean adapter) {
  /** Two sequences of eight tokens; vocabularies are 300. */
  static final String IDS = "1,5,9,3,4,5,7,8;3,4,5,200,100,17,42,2";

  static List<ReferenceCase> all() {
    return List.of(
        new ReferenceCase(
            "llama-mha-untied", config("llama", 4, false, false, false, 0), DType.F32, 0, false),
        new ReferenceCase(
            "llama-gqa-tied", config("llama", 2, true, false, false, 0), DType.F32, 0, false),
        new ReferenceCase(
            "llama-biases", config("llama", 2, false, true, true, 0), DType.F32, 0, false),
        new ReferenceCase(
            "qwen2-qkv-bias", config("qwen2", 2, false, true, false, 0), DType.F32, 0, false),
        new ReferenceCase(
            "mistral-window", config("mistral", 2, false, false, false, 3), DType.F32, 0, false),
        new ReferenceCase(
            "llama-bf16-weights", config("llama", 2, false, false, false, 0), DType.BF16, 0, false),
        new ReferenceCase(
            "qwen2-f16-weights", config("qwen2", 1, true, true, false, 0), DType.F16, 0, false),
        new ReferenceCase(
            "llama-sharded", config("llama", 2, false, false, false, 0), DType.F32, 40_000, false),
        new ReferenceCase(
            "llama-peft-qv", config("llama", 2, false, false, false, 0), DType.F32, 0, true));
  }

  static ModelConfig config(
      String type, int kvHeads, boolean tied, boolean attnBias, boolean mlpBias, int window) {
    boolean qwen = type.equals("qwen2");
    return new ModelConfig(
        type,
        300,
        64,
        96,
        2,
        4,
        kvHeads,
        16,
        1e-6,
        10000.0,
        tied,
        qwen || attnBias,
        !qwen && attnBias,
        mlpBias,
        window,
        128,
        List.of(2L),
        1);
  }

  Path modelDir(Path root) {
    return root.resolve(name).resolve("model");
  }

  Path adapterDir(Path root) {
    return root.resolve(name).resolve("adapter");
  }

  /**
   * Writes the model (and adapter) under {@code root}; the same seed always gives the same bytes.
   */
  void write(Path root) throws IOException {
    // std 0.1 rather than 0.02: logits of order one, so a relative tolerance means something
    new RandomInit(config)
        .seed(1234)
        .std(0.1)
        .storage(storage)
        .maxShardBytes(maxShardBytes)
        .write(modelDir(root));
    if (adapter) writeAdapter(adapterDir(root));
  }

  /** A q_proj/v_proj adapter, r=4, alpha=8, with B nonzero so that it changes the logits. */
  private void writeAdapter(Path dir) throws IOException {
    int r = 4;
    long h = config.hiddenSize();
    long q = (long) config.numHeads() * config.headDim();
    long kv = (long) config.numKvHeads() * config.headDim();
    SortedMap<String, TensorData> t = new TreeMap<>();
    Torch.init();
    torch.manual_seed(99);
    for (int layer = 0; layer < config.numLayers(); layer++) {
      for (LoraTarget target : List.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ)) {
        long out = target == LoraTarget.Q_PROJ ? q : kv;
        t.put(PeftAdapter.key(layer, target, 'A'), random(new long[] {r, h}));
        t.put(PeftAdapter.key(layer, target, 'B'), random(new long[] {out, r}));
      }
    }
    PeftAdapter.write(
        dir, r, 8.0, 0.0, EnumSet.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ), t, "tiny");
  }

  private static TensorData random(long[] shape) {
    try (Tensor x = torch.randn(shape);
        Tensor s = x.mul(Torch.scalar(0.1))) {
      return new TensorData(DType.F32, shape, Torch.toBytes(s));
    }
  }

  /**
   * SHA-256 over what determines the logits: the weight files' bytes, the adapter's files and the
   * architecture as parsed from config.json (not its formatting). Tokenizer and generation config
   * do not enter.
   */
  String fingerprint(Path root) throws Exception {
    MessageDigest md = MessageDigest.getInstance("SHA-256");
    for (Path dir : adapter ? List.of(modelDir(root), adapterDir(root)) : List.of(modelDir(root))) {
      try (Stream<Path> files = Files.list(dir)) {
        for (Path f : files.sorted().toList()) {
          String name = f.getFileName().toString();
          if (name.equals("tokenizer.json") || name.equals("generation_config.json")) continue;
          md.update(name.getBytes(StandardCharsets.UTF_8));
          if (name.equals("config.json")) {
            md.update(ModelConfig.read(f).toString().getBytes(StandardCharsets.UTF_8));
          } else {
            try (InputStream in = Files.newInputStream(f)) {
              md.update(in.readAllBytes());
            }
          }
        }
      }
    }
    return HexFormat.of().formatHex(md.digest());
  }
}
