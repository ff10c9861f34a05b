package dev.troupe.cli;

import dev.troupe.pipeline.model.GreedyDecoder;
import dev.troupe.pipeline.tokenizer.TextTokenizer;
import java.io.PrintStream;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;

/** {@code troupe generate}: greedy continuation of a prompt. */
final class GenerateCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Set<String> names = new HashSet<>(ModelOptions.NAMES);
    names.addAll(Set.of("prompt", "prompt-ids", "max-new-tokens"));
    Args args = Args.parse("generate", argv, names, Set.of("json"));
    ModelOptions options = ModelOptions.from("generate", args);
    if (args.has("prompt") == args.has("prompt-ids")) {
      throw new UsageException(
          "generate: give exactly one of --prompt TEXT and --prompt-ids 1,2,3");
    }
    int maxNew = args.intValue("max-new-tokens", 32, 0);
    try (ModelOptions.Loaded loaded = options.load()) {
      int vocab = loaded.hf().config().vocabSize();
      TextTokenizer tokenizer = null;
      try {
        if (args.has("prompt") || (!args.has("json") && loaded.hf().hasTokenizer())) {
          if (!loaded.hf().hasTokenizer()) {
            throw new UsageException(
                "generate: --prompt needs a tokenizer.json in "
                    + options.model()
                    + "; use --prompt-ids");
          }
          tokenizer = TextTokenizer.open(options.model());
        }
        long[] prompt =
            args.has("prompt")
                ? tokenizer.encode(args.require("prompt"))
                : TokenIds.parseSequence("--prompt-ids", args.require("prompt-ids"), vocab);
        if (prompt.length == 0)
          throw new UsageException("generate: the prompt encodes to no tokens");
        for (long id : prompt) {
          if (id >= vocab)
            throw new UsageException(
                "generate: the tokenizer produced id "
                    + id
                    + " beyond the model's vocabulary "
                    + vocab);
        }
        long[] generated =
            GreedyDecoder.generate(loaded.lm(), prompt, maxNew, loaded.hf().eosTokenIds());
        if (args.has("json")) {
          out.println(
              Arrays.stream(generated)
                  .mapToObj(Long::toString)
                  .collect(Collectors.joining(",", "[", "]")));
        } else if (tokenizer != null) {
          out.println(decode(tokenizer, generated));
        } else {
          out.println(
              Arrays.stream(generated).mapToObj(Long::toString).collect(Collectors.joining(" ")));
        }
      } finally {
        if (tokenizer != null) tokenizer.close();
      }
    }
    return 0;
  }

  /**
   * The text of generated ids. A model's vocabulary may be larger than its tokenizer's (random
   * models, padded embeddings): ids the tokenizer does not know are shown as {@code [id N]}.
   */
  static String decode(TextTokenizer tokenizer, long[] ids) {
    StringBuilder text = new StringBuilder();
    int start = 0;
    for (int i = 0; i <= ids.length; i++) {
      if (i == ids.length || ids[i] >= tokenizer.vocabSize()) {
        if (i > start) text.append(tokenizer.decode(Arrays.copyOfRange(ids, start, i), true));
        if (i < ids.length) text.append("[id ").append(ids[i]).append(']');
        start = i + 1;
      }
    }
    return text.toString();
  }
}
