package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import java.util.Arrays;
import java.util.Collection;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;

/**
 * Greedy decoding: append the most likely next token until an end-of-sequence id or the token
 * budget. Each step runs the whole sequence again (there is no key/value cache yet), which is fine
 * for tests and demos and quadratic for long generations.
 */
public final class GreedyDecoder {
  private GreedyDecoder() {}

  /** Returns only the new tokens (the eos token included when one ended the generation). */
  public static long[] generate(
      CausalLm model, long[] prompt, int maxNewTokens, Collection<Long> eos) {
    if (prompt.length == 0) throw new IllegalArgumentException("the prompt is empty");
    int limit = model.config().maxPositionEmbeddings();
    long[] seq = Arrays.copyOf(prompt, prompt.length);
    int produced = 0;
    while (produced < maxNewTokens && seq.length < limit) {
      long next;
      try (PointerScope scope = new PointerScope();
          Tensor logits = model.forward(Torch.fromLongs(seq, 1, seq.length))) {
        next = Torch.toLongs(logits.select(1, seq.length - 1).argmax())[0];
      }
      seq = Arrays.copyOf(seq, seq.length + 1);
      seq[seq.length - 1] = next;
      produced++;
      if (eos.contains(next)) break;
    }
    return Arrays.copyOfRange(seq, prompt.length, seq.length);
  }
}
