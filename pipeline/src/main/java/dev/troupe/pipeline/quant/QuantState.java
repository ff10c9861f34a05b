package dev.troupe.pipeline.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.troupe.pipeline.lora.LoraKey;
import dev.troupe.pipeline.lora.LoraTarget;
import java.io.IOException;
import java.util.EnumMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * The format of every decoder linear layer and how many consecutive checks it has been calm:
 * training state, saved with checkpoints so that a resumed run holds the same precisions.
 */
public final class QuantState {
  private final Map<LoraKey, QuantFormat> formats = new TreeMap<>();
  private final Map<LoraKey, Integer> calm = new TreeMap<>();

  /** Every linear layer of {@code layers} decoder layers in {@code base}. */
  public static QuantState initial(int layers, QuantFormat base) {
    QuantState s = new QuantState();
    for (int i = 0; i < layers; i++) {
      for (LoraTarget t : LoraTarget.values()) {
        s.formats.put(new LoraKey(i, t), base);
        s.calm.put(new LoraKey(i, t), 0);
      }
    }
    return s;
  }

  /** The metrics name of a layer: {@code layers.<i>.<module>}. */
  public static String name(LoraKey key) {
    return "layers." + key.layer() + "." + key.target().moduleName();
  }

  /**
   * The layer a {@link #name} names.
   *
   * @throws IllegalArgumentException where {@code name} is not of that form
   */
  public static LoraKey key(String name) {
    String[] parts = name.split("\\.");
    if (parts.length != 3 || !parts[0].equals("layers")) {
      throw new IllegalArgumentException("not a layer name: " + name);
    }
    LoraTarget target = LoraTarget.fromModuleName(parts[2]);
    if (target == null) throw new IllegalArgumentException("not a layer name: " + name);
    try {
      return new LoraKey(Integer.parseInt(parts[1]), target);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("not a layer name: " + name, e);
    }
  }

  /** A copy of this state (formats and calm counts). */
  public QuantState copy() {
    QuantState s = new QuantState();
    s.formats.putAll(formats);
    s.calm.putAll(calm);
    return s;
  }

  public QuantFormat format(LoraKey key) {
    return formats.getOrDefault(key, QuantFormat.NONE);
  }

  public int calm(LoraKey key) {
    return calm.getOrDefault(key, 0);
  }

  public Iterable<LoraKey> keys() {
    return formats.keySet();
  }

  /**
   * How many linear layers are held in each format, most precise first, e.g. {@code "28 int8"} or
   * {@code "3 none (compute dtype), 25 int4"}.
   */
  public String summary() {
    Map<QuantFormat, Integer> counts = new EnumMap<>(QuantFormat.class);
    for (QuantFormat f : formats.values()) counts.merge(f, 1, Integer::sum);
    StringBuilder b = new StringBuilder();
    for (Map.Entry<QuantFormat, Integer> e : counts.entrySet()) {
      if (b.length() > 0) b.append(", ");
      b.append(e.getValue()).append(' ').append(e.getKey().label());
      if (e.getKey() == QuantFormat.NONE) b.append(" (compute dtype)");
    }
    return b.toString();
  }

  /** Records a check's outcome for one layer. */
  public void update(LoraKey key, QuantFormat format, int calmChecks) {
    formats.put(key, format);
    calm.put(key, calmChecks);
  }

  /** {@code {"layers.0.q_proj": {"format": "int8", "calm": 2}, ...}}. */
  public ObjectNode toJson() {
    ObjectNode json = JsonNodeFactory.instance.objectNode();
    for (LoraKey k : formats.keySet()) {
      ObjectNode layer = json.putObject(name(k));
      layer.put("format", formats.get(k).label());
      layer.put("calm", calm(k));
    }
    return json;
  }

  /** Reads {@link #toJson}'s form, as text, for a model of {@code layers} decoder layers. */
  public static QuantState fromJson(String json, int layers, String where) throws IOException {
    return fromJson(
        new com.fasterxml.jackson.databind.ObjectMapper().readTree(json), layers, where);
  }

  /** Reads {@link #toJson}'s form for a model of {@code layers} decoder layers. */
  public static QuantState fromJson(JsonNode json, int layers, String where) throws IOException {
    QuantState s = new QuantState();
    for (int i = 0; i < layers; i++) {
      for (LoraTarget t : LoraTarget.values()) {
        LoraKey k = new LoraKey(i, t);
        JsonNode layer = json.get(name(k));
        if (layer == null || !layer.path("format").isTextual()) {
          throw new IOException(where + ": no quantization format for " + name(k));
        }
        try {
          s.update(k, QuantFormat.parse(layer.get("format").asText()), layer.path("calm").asInt());
        } catch (IllegalArgumentException e) {
          throw new IOException(where + ": " + name(k) + ": " + e.getMessage(), e);
        }
      }
    }
    return s;
  }
}
