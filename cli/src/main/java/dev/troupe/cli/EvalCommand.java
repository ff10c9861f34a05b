package dev.troupe.cli;

import dev.troupe.pipeline.data.Format;
import dev.troupe.pipeline.data.JsonlDataset;
import dev.troupe.pipeline.data.TextEncoding;
import dev.troupe.pipeline.data.chat.ChatTemplate;
import dev.troupe.pipeline.tokenizer.TextTokenizer;
import dev.troupe.pipeline.train.Evaluator;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * {@code troupe eval}: eval loss, perplexity and exact-match accuracy of a model (with an optional
 * adapter) on a JSONL file; with {@code --compare-adapter} or {@code --compare-model} a second one
 * on the same data, and the first's accuracy relative to the second's.
 */
final class EvalCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Set<String> names = new HashSet<>(ModelOptions.NAMES);
    names.addAll(
        Set.of(
            "data",
            "format",
            "seq-len",
            "batch",
            "max-new-tokens",
            "compare-adapter",
            "compare-model",
            "chat-template"));
    Args args = Args.parse("eval", argv, names, Set.of());
    ModelOptions options = ModelOptions.from("eval", args);
    Format format;
    try {
      format = Format.parse(args.get("format", "alpaca"));
    } catch (IllegalArgumentException e) {
      throw new UsageException("eval: --format: " + e.getMessage());
    }
    int seqLen = args.intValue("seq-len", 512, 2);
    int batch = args.intValue("batch", 4, 1);
    int maxNew = args.intValue("max-new-tokens", 64, 1);
    String templateChoice = args.get("chat-template", "model");
    if (!templateChoice.equals("model") && !templateChoice.equals("default")) {
      throw new UsageException(
          "eval: --chat-template must be model or default, got " + templateChoice);
    }
    boolean modelTemplate = templateChoice.equals("model");
    Path data = args.path("data");
    Evaluator.Result first = evaluate(options, data, format, seqLen, batch, maxNew, modelTemplate);
    print(out, describe(options), first);
    if (args.has("compare-adapter") || args.has("compare-model")) {
      ModelOptions other =
          new ModelOptions(
              args.has("compare-model") ? Path.of(args.require("compare-model")) : options.model(),
              args.has("compare-adapter") ? Path.of(args.require("compare-adapter")) : null,
              options.dtype(),
              options.threads(),
              options.quantize());
      Evaluator.Result second = evaluate(other, data, format, seqLen, batch, maxNew, modelTemplate);
      print(out, describe(other), second);
      if (!Double.isNaN(first.exactMatch()) && second.exactMatch() > 0) {
        out.printf(
            Locale.ROOT,
            "accuracy retention (first / second): %.1f%%%n",
            100 * first.exactMatch() / second.exactMatch());
      }
      out.printf(
          Locale.ROOT,
          "eval loss difference (first - second): %+.4f%n",
          first.loss() - second.loss());
    }
    return 0;
  }

  static Evaluator.Result evaluate(
      ModelOptions options,
      Path data,
      Format format,
      int seqLen,
      int batch,
      int maxNew,
      boolean modelTemplate)
      throws Exception {
    try (ModelOptions.Loaded loaded = options.load()) {
      TextTokenizer tokenizer =
          loaded.hf().hasTokenizer() ? TextTokenizer.open(options.model()) : null;
      try {
        if (tokenizer == null && format != Format.TOKENS) {
          throw new UsageException(
              "eval: --format " + format + " needs a tokenizer.json in " + options.model());
        }
        List<Long> eos = loaded.hf().eosTokenIds();
        long eosId = eos.isEmpty() ? -1 : eos.get(0);
        JsonlDataset ds =
            JsonlDataset.load(
                data,
                format,
                new TextEncoding(
                    format == Format.TOKENS ? null : tokenizer,
                    loaded.hf().config().bosTokenId(),
                    eosId,
                    format == Format.CHAT && modelTemplate
                        ? ChatTemplate.fromModel(options.model()).orElse(null)
                        : null),
                seqLen,
                false);
        return Evaluator.run(
            loaded.lm(), ds, batch, seqLen, Math.max(0, eosId), tokenizer, maxNew, eos);
      } finally {
        if (tokenizer != null) tokenizer.close();
      }
    }
  }

  static String describe(ModelOptions o) {
    return o.model() + (o.adapter() == null ? "" : " + " + o.adapter());
  }

  static void print(PrintStream out, String what, Evaluator.Result r) {
    out.printf(
        Locale.ROOT,
        "%s: %d examples, eval loss %.4f, perplexity %.2f%s%n",
        what,
        r.examples(),
        r.loss(),
        r.perplexity(),
        Double.isNaN(r.exactMatch())
            ? ""
            : String.format(Locale.ROOT, ", exact match %.1f%%", 100 * r.exactMatch()));
  }
}
