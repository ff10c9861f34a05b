package dev.troupe.pipeline.lora;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.troupe.pipeline.io.AtomicFile;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.model.ModelFormatException;
import dev.troupe.pipeline.safetensors.SafetensorsFile;
import dev.troupe.pipeline.safetensors.SafetensorsWriter;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.safetensors.TensorSource;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A PEFT LoRA adapter folder: {@code adapter_config.json} and {@code adapter_model.safetensors}
 * with PEFT's key names ({@code base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight},
 * optionally with {@code .default} before {@code .weight}). The scaling is PEFT's {@code lora_alpha
 * / r}, or {@code lora_alpha / sqrt(r)} with {@code use_rslora}.
 */
public final class PeftAdapter implements AutoCloseable {
  public static final String CONFIG = "adapter_config.json";
  public static final String WEIGHTS = "adapter_model.safetensors";
  private static final Pattern KEY =
      Pattern.compile(
          "base_model\\.model\\.model\\.layers\\.(\\d+)\\.(self_attn|mlp)\\.(\\w+)\\.lora_([AB])(?:\\.default)?\\.weight");

  private final Path dir;
  private final int r;
  private final double alpha;
  private final double scaling;
  private final boolean rslora;
  private final double dropout;
  private final Set<LoraTarget> targets;
  private final TensorSource weights;

  /** layer -> target -> {key of A, key of B}. */
  private final Map<Integer, Map<LoraTarget, String[]>> keys;

  private PeftAdapter(
      Path dir,
      int r,
      double alpha,
      boolean rslora,
      double dropout,
      TensorSource weights,
      Map<Integer, Map<LoraTarget, String[]>> keys) {
    this.dir = dir;
    this.r = r;
    this.alpha = alpha;
    this.scaling = rslora ? alpha / Math.sqrt(r) : alpha / r;
    this.rslora = rslora;
    this.dropout = dropout;
    this.weights = weights;
    this.keys = keys;
    EnumSet<LoraTarget> t = EnumSet.noneOf(LoraTarget.class);
    keys.values().forEach(m -> t.addAll(m.keySet()));
    this.targets = t;
  }

  /** Opens and validates an adapter folder. */
  public static PeftAdapter open(Path dir) throws IOException {
    if (!Files.isDirectory(dir))
      throw new ModelFormatException(dir, "adapter folder does not exist");
    Path cfgFile = dir.resolve(CONFIG);
    if (!Files.isRegularFile(cfgFile))
      throw new ModelFormatException(dir, "no " + CONFIG + " (not a PEFT adapter folder)");
    JsonNode cfg;
    try {
      cfg = new ObjectMapper().readTree(cfgFile.toFile());
    } catch (IOException e) {
      throw new ModelFormatException(cfgFile, "not valid JSON: " + e.getMessage());
    }
    String type = cfg.path("peft_type").asText("LORA");
    if (!type.equalsIgnoreCase("LORA"))
      throw new ModelFormatException(
          cfgFile, "peft_type " + type + " is not supported (only LORA)");
    if (!cfg.path("r").isIntegralNumber() || cfg.get("r").asInt() <= 0)
      throw new ModelFormatException(cfgFile, "r must be a positive integer");
    int r = cfg.get("r").asInt();
    if (!cfg.path("lora_alpha").isNumber())
      throw new ModelFormatException(cfgFile, "lora_alpha must be a number");
    double alpha = cfg.get("lora_alpha").asDouble();
    if (cfg.path("fan_in_fan_out").asBoolean(false))
      throw new ModelFormatException(cfgFile, "fan_in_fan_out=true is not supported");
    String bias = cfg.path("bias").asText("none");
    if (!bias.equals("none"))
      throw new ModelFormatException(cfgFile, "bias=\"" + bias + "\" is not supported (only none)");
    for (String k : List.of("rank_pattern", "alpha_pattern")) {
      if (cfg.path(k).size() > 0) throw new ModelFormatException(cfgFile, k + " is not supported");
    }
    for (String k : List.of("modules_to_save", "layers_to_transform")) {
      if (cfg.hasNonNull(k) && !(cfg.get(k).isArray() && cfg.get(k).isEmpty())) {
        throw new ModelFormatException(cfgFile, k + " is not supported");
      }
    }
    JsonNode tm = cfg.path("target_modules");
    if (tm.isArray()) {
      for (JsonNode n : tm) {
        if (LoraTarget.fromModuleName(n.asText()) == null) {
          throw new ModelFormatException(
              cfgFile,
              "target module \""
                  + n.asText()
                  + "\" is not supported (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,"
                  + " down_proj)");
        }
      }
    }
    Path weightsFile = dir.resolve(WEIGHTS);
    if (!Files.isRegularFile(weightsFile)) throw new ModelFormatException(dir, "no " + WEIGHTS);
    SafetensorsFile weights = SafetensorsFile.open(weightsFile);
    try {
      Map<Integer, Map<LoraTarget, String[]>> keys = index(weightsFile, weights);
      return new PeftAdapter(
          dir,
          r,
          alpha,
          cfg.path("use_rslora").asBoolean(false),
          cfg.path("lora_dropout").asDouble(0.0),
          weights,
          keys);
    } catch (IOException | RuntimeException e) {
      weights.close();
      throw e;
    }
  }

  private static Map<Integer, Map<LoraTarget, String[]>> index(Path file, TensorSource weights)
      throws ModelFormatException {
    Map<Integer, Map<LoraTarget, String[]>> keys = new TreeMap<>();
    for (String name : weights.names()) {
      Matcher m = KEY.matcher(name);
      LoraTarget t = m.matches() ? LoraTarget.fromModuleName(m.group(3)) : null;
      if (t == null || !t.parent().equals(m.group(2))) {
        throw new ModelFormatException(
            file,
            "unexpected tensor "
                + name
                + " (only LoRA A/B weights of q/k/v/o/gate/up/down_proj are supported)");
      }
      String[] pair =
          keys.computeIfAbsent(
                  Integer.parseInt(m.group(1)), k -> new java.util.EnumMap<>(LoraTarget.class))
              .computeIfAbsent(t, k -> new String[2]);
      pair[m.group(4).equals("A") ? 0 : 1] = name;
    }
    for (var layer : keys.entrySet()) {
      for (var e : layer.getValue().entrySet()) {
        if (e.getValue()[0] == null || e.getValue()[1] == null) {
          throw new ModelFormatException(
              file,
              "layer "
                  + layer.getKey()
                  + " "
                  + e.getKey().moduleName()
                  + " has lora_"
                  + (e.getValue()[0] == null ? "B without lora_A" : "A without lora_B"));
        }
      }
    }
    if (keys.isEmpty()) throw new ModelFormatException(file, "holds no LoRA weights");
    return keys;
  }

  /**
   * Checks that every adapted layer exists in the model. Shapes are checked as weights are read.
   */
  public void validate(ModelConfig config) throws ModelFormatException {
    for (int layer : keys.keySet()) {
      if (layer >= config.numLayers()) {
        throw new ModelFormatException(
            dir.resolve(WEIGHTS),
            "adapts layer " + layer + " but the model has " + config.numLayers() + " layers");
      }
    }
  }

  /** The tensor keys {A, B} for a layer's module, or null where that module is not adapted. */
  public String[] keys(int layer, LoraTarget target) {
    Map<LoraTarget, String[]> m = keys.get(layer);
    return m == null ? null : m.get(target);
  }

  public TensorSource weights() {
    return weights;
  }

  public Path dir() {
    return dir;
  }

  public int r() {
    return r;
  }

  public double alpha() {
    return alpha;
  }

  public double scaling() {
    return scaling;
  }

  /** True where the scaling is {@code lora_alpha / sqrt(r)} (rank-stabilised LoRA). */
  public boolean rslora() {
    return rslora;
  }

  public double dropout() {
    return dropout;
  }

  public Set<LoraTarget> targets() {
    return targets;
  }

  /** The PEFT key of one LoRA matrix. */
  public static String key(int layer, LoraTarget target, char matrix) {
    return "base_model.model.model.layers."
        + layer
        + "."
        + target.parent()
        + "."
        + target.moduleName()
        + ".lora_"
        + matrix
        + ".weight";
  }

  /**
   * Writes an adapter folder that PEFT loads: {@code adapter_config.json} and {@code
   * adapter_model.safetensors} (tensors keyed as {@link #key}).
   */
  public static void write(
      Path dir,
      int r,
      double alpha,
      double dropout,
      Set<LoraTarget> targets,
      SortedMap<String, TensorData> tensors,
      String baseModel)
      throws IOException {
    write(dir, r, alpha, false, dropout, targets, tensors, baseModel);
  }

  /**
   * As {@link #write(Path, int, double, double, Set, SortedMap, String)}, with {@code use_rslora}.
   */
  public static void write(
      Path dir,
      int r,
      double alpha,
      boolean rslora,
      double dropout,
      Set<LoraTarget> targets,
      SortedMap<String, TensorData> tensors,
      String baseModel)
      throws IOException {
    Files.createDirectories(dir);
    ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    ObjectNode c = mapper.createObjectNode();
    c.put("peft_type", "LORA");
    c.put("task_type", "CAUSAL_LM");
    c.put("base_model_name_or_path", baseModel);
    c.put("r", r);
    c.put("lora_alpha", alpha);
    c.put("lora_dropout", dropout);
    targets.forEach(t -> c.withArray("target_modules").add(t.moduleName()));
    c.put("bias", "none");
    c.put("fan_in_fan_out", false);
    c.put("use_rslora", rslora);
    c.put("inference_mode", true);
    c.putNull("modules_to_save");
    SafetensorsWriter.write(dir.resolve(WEIGHTS), tensors, Map.of("format", "pt"));
    AtomicFile.write(dir.resolve(CONFIG), mapper.writeValueAsBytes(c));
  }

  @Override
  public void close() throws IOException {
    weights.close();
  }
}
