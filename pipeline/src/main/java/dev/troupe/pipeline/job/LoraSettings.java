package dev.troupe.pipeline.job;

import java.nio.file.Path;
import java.util.List;

/**
 * The LoRA adapter to train ({@code lora { ... }}).
 *
 * @param r the rank of the low-rank update
 * @param alpha the scaling numerator: the update is scaled by {@code alpha / r}
 * @param dropout the dropout probability on the adapter's input, in [0, 1)
 * @param targets the PEFT module names adapted in every decoder layer, e.g. {@code q_proj}
 * @param init a PEFT adapter folder to start from, or null to start from a fresh adapter
 */
public record LoraSettings(int r, double alpha, double dropout, List<String> targets, Path init) {
  public LoraSettings {
    targets = List.copyOf(targets);
  }
}
