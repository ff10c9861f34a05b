package dev.troupe.pipeline.train;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.data.Example;
import dev.troupe.pipeline.data.JsonlDataset;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.metrics.StepOutputs;
import dev.troupe.pipeline.model.AllReduce;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.GreedyDecoder;
import dev.troupe.pipeline.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

/**
 * Held-out evaluation: mean token cross-entropy and perplexity over a dataset, and the exact-match
 * accuracy of greedy generations against the reference outputs (where the data has them: alpaca
 * outputs, chat's last assistant message).
 */
public final class Evaluator {
  private Evaluator() {}

  /**
   * @param exactMatch fraction of examples whose greedy generation equals the reference (both
   *     stripped), or NaN where the data has no references or no tokenizer is given
   */
  public record Result(
      double loss, double perplexity, long tokens, double exactMatch, int examples) {}

  /**
   * The {@code eval} line of metrics.jsonl for {@code r} at {@code step}, and its TensorBoard
   * scalars ({@code eval/loss}, {@code eval/perplexity}, {@code eval/exact_match} where scored).
   */
  public static void record(Result r, long step, StepOutputs outputs) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("event", "eval");
    m.put("step", step);
    m.put("eval_loss", r.loss());
    m.put("perplexity", r.perplexity());
    m.put("tokens", r.tokens());
    if (!Double.isNaN(r.exactMatch())) m.put("exact_match", r.exactMatch());
    outputs.line(m);
    outputs.scalar("eval/loss", step, r.loss());
    outputs.scalar("eval/perplexity", step, r.perplexity());
    if (!Double.isNaN(r.exactMatch())) outputs.scalar("eval/exact_match", step, r.exactMatch());
  }

  public static Result run(
      CausalLm model,
      JsonlDataset data,
      int micro,
      int seqLen,
      long padId,
      TextTokenizer tokenizer,
      int maxNewTokens,
      Collection<Long> eos) {
    double sum = 0;
    long tokens = 0;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      for (int i = 0; i < data.size(); i += micro) {
        List<Example> part = new ArrayList<>();
        for (int j = i; j < Math.min(data.size(), i + micro); j++) part.add(data.get(j));
        Batch b = Batch.of(part, seqLen, padId);
        try (PointerScope scope = new PointerScope()) {
          Tensor ids = Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen());
          Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
          Tensor logits = model.logits(model.forwardLayers(model.embed(ids), AllReduce.NONE));
          sum += CausalLmLoss.sum(logits, labels).item_double();
        }
        tokens += b.labelTokens();
      }
      double loss = tokens > 0 ? sum / tokens : Double.NaN;
      double accuracy =
          tokenizer == null ? Double.NaN : exactMatch(model, data, tokenizer, maxNewTokens, eos);
      return new Result(loss, Math.exp(loss), tokens, accuracy, data.size());
    }
  }

  private static double exactMatch(
      CausalLm model,
      JsonlDataset data,
      TextTokenizer tokenizer,
      int maxNewTokens,
      Collection<Long> eos) {
    int scored = 0;
    int right = 0;
    for (int i = 0; i < data.size(); i++) {
      String reference = data.reference(i);
      long[] prompt = data.promptIds(i);
      if (reference == null || prompt == null || prompt.length == 0) continue;
      long[] out = GreedyDecoder.generate(model, prompt, maxNewTokens, eos);
      scored++;
      // a model's vocabulary may be larger than its tokenizer's: such ids cannot match any text
      boolean decodable = java.util.Arrays.stream(out).allMatch(id -> id < tokenizer.vocabSize());
      if (decodable && tokenizer.decode(out, true).strip().equals(reference.strip())) right++;
    }
    return scored == 0 ? Double.NaN : (double) right / scored;
  }
}
