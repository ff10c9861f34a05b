package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.data.Example;
import dev.troupe.pipeline.data.JsonlDataset;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.model.AllReduce;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.StageSpec;
import dev.troupe.pipeline.tokenizer.TextTokenizer;
import dev.troupe.pipeline.train.CausalLmLoss;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

/**
 * Held-out evaluation through a plan's stages, what {@code train.Evaluator} computes on one device:
 * the summed token cross-entropy of the eval data, and greedy generations scored against the
 * references. Replica {@code r} takes the eval microbatches and examples whose index is {@code r}
 * modulo dp; every stage of its pipeline runs them forward without autograd, activations going to
 * the next stage as in training. A generation runs the whole sequence through the stages for every
 * new token (as {@code GreedyDecoder} does on one device), and the last stage sends each token it
 * picks back to the stages before it. The last stage's ranks hold the results; the driver sums
 * those of shard 0 over the replicas.
 */
final class PipelineEval {
  private final Plan plan;
  private final Plan.Rank rank;
  private final StageSpec stage;
  private final Transport transport;
  private final AllReduce tensorParallel;

  PipelineEval(
      Plan plan, Plan.Rank rank, StageSpec stage, Transport transport, AllReduce tensorParallel) {
    this.plan = plan;
    this.rank = rank;
    this.stage = stage;
    this.transport = transport;
    this.tensorParallel = tensorParallel;
  }

  /**
   * Evaluates {@code m} (this stage, LoRA lent without dropout) after {@code step} steps on {@code
   * data}; exact match only where {@code tokenizer} is given.
   */
  StageWorker.EvalReport run(
      CausalLm m,
      long step,
      JsonlDataset data,
      int micro,
      int seqLen,
      long padId,
      TextTokenizer tokenizer,
      int maxNewTokens,
      Collection<Long> eos) {
    double sum = 0;
    long tokens = 0;
    int right = 0;
    int scored = 0;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      for (int i = 0, mb = 0; i < data.size(); i += micro, mb++) {
        if (mb % plan.dp() != rank.replica()) continue;
        List<Example> part = new ArrayList<>();
        for (int j = i; j < Math.min(data.size(), i + micro); j++) part.add(data.get(j));
        Batch b = Batch.of(part, seqLen, padId);
        try (PointerScope scope = new PointerScope()) {
          Tensor h = through(m, Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen()), tag(step, mb));
          if (stage.hasHead()) {
            Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
            sum += CausalLmLoss.sum(m.logits(h), labels).item_double();
            tokens += b.labelTokens();
          }
        }
      }
      if (tokenizer != null) {
        for (int i = 0; i < data.size(); i++) {
          if (i % plan.dp() != rank.replica()) continue; // another replica's example
          String reference = data.reference(i);
          long[] prompt = data.promptIds(i);
          if (reference == null || prompt == null || prompt.length == 0) continue;
          long[] out = generate(m, step, i, prompt, maxNewTokens, eos);
          if (!stage.hasHead()) continue;
          scored++;
          // a model's vocabulary may be larger than its tokenizer's: such ids match no text
          boolean decodable = Arrays.stream(out).allMatch(id -> id < tokenizer.vocabSize());
          if (decodable && tokenizer.decode(out, true).strip().equals(reference.strip())) right++;
        }
      }
    }
    return new StageWorker.EvalReport(sum, tokens, right, scored);
  }

  private static String tag(long step, int mb) {
    return "eval/" + step + "/" + mb;
  }

  /**
   * This stage's part of a forward: embeds {@code ids} on the first stage, else receives the
   * activations under {@code tag}; runs the layers; sends the result on unless this is the last
   * stage, which returns it (the others return it too, unused).
   */
  private Tensor through(CausalLm m, Tensor ids, String tag) {
    Tensor h =
        stage.hasEmbedding() ? m.embed(ids) : Torch.handOver(transport.receive(previous(), tag));
    h = m.forwardLayers(h, tensorParallel);
    if (!stage.hasHead()) transport.send(next(), tag, h);
    return h;
  }

  /** Greedy generation of example {@code example} through the stages; the new tokens. */
  private long[] generate(
      CausalLm m, long step, int example, long[] prompt, int maxNewTokens, Collection<Long> eos) {
    int limit = m.config().maxPositionEmbeddings();
    long[] seq = Arrays.copyOf(prompt, prompt.length);
    int produced = 0;
    int last = plan.pp() - 1;
    while (produced < maxNewTokens && seq.length < limit) {
      String tag = "gen/" + step + "/" + example + "/" + produced;
      long next;
      try (PointerScope scope = new PointerScope()) {
        Tensor h = through(m, Torch.fromLongs(seq, 1, seq.length), tag);
        if (stage.hasHead()) {
          next = Torch.toLongs(m.logits(h).select(1, seq.length - 1).argmax())[0];
          Tensor token = Torch.fromLongs(new long[] {next}, 1, 1);
          for (int s = 0; s < last; s++) {
            transport.send(plan.rankOf(s, rank.shard(), rank.replica()), "tok/" + tag, token);
          }
        } else {
          Tensor token =
              Torch.handOver(
                  transport.receive(plan.rankOf(last, rank.shard(), rank.replica()), "tok/" + tag));
          next = Torch.toLongs(token)[0];
        }
      }
      seq = Arrays.copyOf(seq, seq.length + 1);
      seq[seq.length - 1] = next;
      produced++;
      if (eos.contains(next)) break;
    }
    return Arrays.copyOfRange(seq, prompt.length, seq.length);
  }

  private int previous() {
    return plan.rankOf(rank.stage() - 1, rank.shard(), rank.replica());
  }

  private int next() {
    return plan.rankOf(rank.stage() + 1, rank.shard(), rank.replica());
  }
}
