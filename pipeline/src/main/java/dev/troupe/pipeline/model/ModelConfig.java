package dev.troupe.pipeline.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * The architecture of a LLaMA-family model, read from a Hugging Face {@code config.json}.
 *
 * <p>Llama, Mistral and Qwen2 share one decoder: RMSNorm, rotary embeddings (rotate-half form),
 * grouped-query attention, SwiGLU MLP. They differ only in options: Qwen2 has biases on q/k/v;
 * Llama may have {@code attention_bias} (q/k/v/o) and {@code mlp_bias}; Mistral may restrict
 * attention to a sliding window.
 *
 * @param slidingWindow keys older than this many positions are masked; 0 means none
 */
public record ModelConfig(
    String modelType,
    int vocabSize,
    int hiddenSize,
    int intermediateSize,
    int numLayers,
    int numHeads,
    int numKvHeads,
    int headDim,
    double rmsNormEps,
    double ropeTheta,
    boolean tieWordEmbeddings,
    boolean qkvBias,
    boolean oBias,
    boolean mlpBias,
    int slidingWindow,
    int maxPositionEmbeddings,
    List<Long> eosTokenIds,
    long bosTokenId) {

  /** Architectures this decoder implements. */
  public static final List<String> SUPPORTED = List.of("llama", "mistral", "qwen2");

  public ModelConfig {
    eosTokenIds = List.copyOf(eosTokenIds);
    if (numHeads % numKvHeads != 0) {
      throw new IllegalArgumentException(
          "num_attention_heads "
              + numHeads
              + " is not a multiple of num_key_value_heads "
              + numKvHeads);
    }
  }

  /** Query heads served by one key/value head. */
  public int groupSize() {
    return numHeads / numKvHeads;
  }

  /** Reads and validates {@code config.json}. */
  public static ModelConfig read(Path file) throws IOException {
    JsonNode root;
    try {
      root = new ObjectMapper().readTree(file.toFile());
    } catch (IOException e) {
      throw new ModelFormatException(file, "not valid JSON: " + e.getMessage());
    }
    if (root == null || !root.isObject()) throw new ModelFormatException(file, "not a JSON object");
    Fields f = new Fields(file, root);
    String type = f.text("model_type", null);
    if (type == null) throw new ModelFormatException(file, "missing model_type");
    type = type.toLowerCase(Locale.ROOT);
    if (!SUPPORTED.contains(type)) {
      throw new ModelFormatException(
          file,
          "unsupported architecture model_type=\""
              + type
              + "\" (supported: "
              + String.join(", ", SUPPORTED)
              + ")");
    }
    String act = f.text("hidden_act", "silu");
    if (!act.equals("silu"))
      throw new ModelFormatException(file, "unsupported hidden_act \"" + act + "\" (only silu)");
    JsonNode scaling = root.get("rope_scaling");
    if (scaling != null && !scaling.isNull()) {
      String kind = scaling.path("rope_type").asText(scaling.path("type").asText("?"));
      if (!kind.equals("default")) {
        throw new ModelFormatException(
            file,
            "unsupported rope_scaling type \"" + kind + "\" (only the default rotary embedding)");
      }
    }
    int hidden = f.positive("hidden_size");
    int heads = f.positive("num_attention_heads");
    int kvHeads =
        root.has("num_key_value_heads") && !root.get("num_key_value_heads").isNull()
            ? f.positive("num_key_value_heads")
            : heads;
    if (heads % kvHeads != 0) {
      throw new ModelFormatException(
          file,
          "num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kvHeads);
    }
    int headDim;
    if (root.hasNonNull("head_dim")) {
      headDim = f.positive("head_dim");
    } else {
      if (hidden % heads != 0)
        throw new ModelFormatException(
            file, "hidden_size " + hidden + " is not divisible by num_attention_heads " + heads);
      headDim = hidden / heads;
    }
    if (headDim % 2 != 0)
      throw new ModelFormatException(
          file, "head_dim " + headDim + " must be even for rotary embeddings");
    boolean qwen = type.equals("qwen2");
    boolean attnBias = f.bool("attention_bias", false);
    if (qwen && f.bool("use_sliding_window", false)) {
      // Qwen2 applies its window only from max_window_layers upwards; not implemented.
      throw new ModelFormatException(file, "use_sliding_window=true is not supported for qwen2");
    }
    int window = 0;
    if (type.equals("mistral")) {
      // transformers' MistralConfig defaults to a 4096 window when the key is absent; null means
      // none.
      window =
          !root.has("sliding_window")
              ? 4096
              : root.get("sliding_window").isNull() ? 0 : f.positive("sliding_window");
    }
    return new ModelConfig(
        type,
        f.positive("vocab_size"),
        hidden,
        f.positive("intermediate_size"),
        f.positive("num_hidden_layers"),
        heads,
        kvHeads,
        headDim,
        f.number("rms_norm_eps", 1e-6),
        f.number("rope_theta", 10000.0),
        f.bool("tie_word_embeddings", false),
        qwen || attnBias,
        !qwen && attnBias,
        f.bool("mlp_bias", false),
        window,
        root.hasNonNull("max_position_embeddings") ? f.positive("max_position_embeddings") : 2048,
        f.ids("eos_token_id"),
        root.hasNonNull("bos_token_id") ? root.get("bos_token_id").asLong() : -1);
  }

  /** This configuration as a Hugging Face {@code config.json} object. */
  public ObjectNode toJson() {
    ObjectMapper m = new ObjectMapper();
    ObjectNode o = m.createObjectNode();
    String arch =
        switch (modelType) {
          case "mistral" -> "MistralForCausalLM";
          case "qwen2" -> "Qwen2ForCausalLM";
          default -> "LlamaForCausalLM";
        };
    o.putArray("architectures").add(arch);
    o.put("model_type", modelType);
    o.put("vocab_size", vocabSize);
    o.put("hidden_size", hiddenSize);
    o.put("intermediate_size", intermediateSize);
    o.put("num_hidden_layers", numLayers);
    o.put("num_attention_heads", numHeads);
    o.put("num_key_value_heads", numKvHeads);
    o.put("head_dim", headDim);
    o.put("hidden_act", "silu");
    o.put("rms_norm_eps", rmsNormEps);
    o.put("rope_theta", ropeTheta);
    o.put("max_position_embeddings", maxPositionEmbeddings);
    o.put("tie_word_embeddings", tieWordEmbeddings);
    if (!modelType.equals("qwen2")) o.put("attention_bias", qkvBias);
    if (modelType.equals("llama")) o.put("mlp_bias", mlpBias);
    if (modelType.equals("mistral")) {
      if (slidingWindow > 0) o.put("sliding_window", slidingWindow);
      else o.putNull("sliding_window");
    }
    if (modelType.equals("qwen2")) o.put("use_sliding_window", false);
    if (bosTokenId >= 0) o.put("bos_token_id", bosTokenId);
    if (eosTokenIds.size() == 1) o.put("eos_token_id", eosTokenIds.get(0));
    else if (!eosTokenIds.isEmpty()) eosTokenIds.forEach(o.withArray("eos_token_id")::add);
    o.put("torch_dtype", "float32");
    return o;
  }

  /** Typed access to config.json fields with errors that name the file and the key. */
  record Fields(Path file, JsonNode root) {
    int positive(String key) throws ModelFormatException {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) throw new ModelFormatException(file, "missing " + key);
      if (!n.canConvertToInt() || !n.isIntegralNumber() || n.asInt() <= 0) {
        throw new ModelFormatException(file, key + " must be a positive integer, got " + n);
      }
      return n.asInt();
    }

    double number(String key, double dflt) throws ModelFormatException {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return dflt;
      if (!n.isNumber()) throw new ModelFormatException(file, key + " must be a number, got " + n);
      return n.asDouble();
    }

    boolean bool(String key, boolean dflt) throws ModelFormatException {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return dflt;
      if (!n.isBoolean())
        throw new ModelFormatException(file, key + " must be true or false, got " + n);
      return n.asBoolean();
    }

    String text(String key, String dflt) throws ModelFormatException {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return dflt;
      if (!n.isTextual()) throw new ModelFormatException(file, key + " must be a string, got " + n);
      return n.asText();
    }

    List<Long> ids(String key) throws ModelFormatException {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) return List.of();
      if (n.isIntegralNumber()) return List.of(n.asLong());
      if (n.isArray()) {
        java.util.ArrayList<Long> out = new java.util.ArrayList<>();
        for (JsonNode e : n) {
          if (!e.isIntegralNumber())
            throw new ModelFormatException(file, key + " must hold integers, got " + n);
          out.add(e.asLong());
        }
        return out;
      }
      throw new ModelFormatException(
          file, key + " must be an integer or a list of integers, got " + n);
    }
  }
}
