package dev.troupe.pipeline.lora;

import java.util.Comparator;

/** Where a LoRA pair sits: a decoder layer (global index) and one of its linear layers. */
public record LoraKey(int layer, LoraTarget target) implements Comparable<LoraKey> {
  private static final Comparator<LoraKey> ORDER =
      Comparator.comparingInt(LoraKey::layer).thenComparing(LoraKey::target);

  /** Layers ascending; within a layer q, k, v, o, gate, up, down (PEFT's module order). */
  @Override
  public int compareTo(LoraKey o) {
    return ORDER.compare(this, o);
  }
}
