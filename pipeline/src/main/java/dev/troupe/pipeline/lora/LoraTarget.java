package dev.troupe.pipeline.lora;

import java.util.Locale;

/** The linear layers of a LLaMA decoder layer that LoRA can adapt, with PEFT's module names. */
public enum LoraTarget {
  Q_PROJ("self_attn", true),
  K_PROJ("self_attn", true),
  V_PROJ("self_attn", true),
  O_PROJ("self_attn", false),
  GATE_PROJ("mlp", true),
  UP_PROJ("mlp", true),
  DOWN_PROJ("mlp", false);

  private final String parent;
  private final boolean columnParallel;

  LoraTarget(String parent, boolean columnParallel) {
    this.parent = parent;
    this.columnParallel = columnParallel;
  }

  /** The module name as Hugging Face and PEFT write it, e.g. {@code q_proj}. */
  public String moduleName() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** {@code self_attn} or {@code mlp}. */
  public String parent() {
    return parent;
  }

  /**
   * True where a tensor shard splits the layer's outputs (q/k/v/gate/up), false where it splits its
   * inputs (o/down).
   */
  public boolean columnParallel() {
    return columnParallel;
  }

  /** The target with this module name, or null. */
  public static LoraTarget fromModuleName(String name) {
    for (LoraTarget t : values()) if (t.moduleName().equals(name)) return t;
    return null;
  }
}
