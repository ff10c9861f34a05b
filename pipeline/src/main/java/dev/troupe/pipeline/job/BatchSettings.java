package dev.troupe.pipeline.job;

/**
 * Batch sizes ({@code batch { ... }}).
 *
 * @param global sequences per optimizer step
 * @param micro sequences per forward/backward pass; divides {@code global}
 * @param seqLen the maximum sequence length in tokens; longer examples are truncated
 */
public record BatchSettings(int global, int micro, int seqLen) {
  /** Forward/backward passes accumulated per optimizer step. */
  public int accumulationSteps() {
    return global / micro;
  }
}
