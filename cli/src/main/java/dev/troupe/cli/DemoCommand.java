package dev.troupe.cli;

import dev.troupe.pipeline.demo.Demo;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/** {@code troupe demo}: the main job on embedded defaults; see {@link Demo}. */
final class DemoCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Args args = Args.parse("demo", argv, Set.of("out", "precision", "steps"), Set.of());
    String precision = args.get("precision", "bf16");
    if (!List.of("fp32", "bf16", "fp16", "int8", "nf4").contains(precision)) {
      throw new UsageException(
          "demo: --precision must be fp32, bf16, fp16, int8 or nf4 (LoRA in bf16 over a base held"
              + " in that format)");
    }
    Demo demo =
        new Demo(
            Path.of(args.get("out", "runs/demo")),
            out,
            System.console() != null && out == System.out);
    Demo.Result r = demo.run(precision, args.intValue("steps", 300, 1));
    out.printf(
        Locale.ROOT,
        "%nexact match on %d held-out 'upper' prompts: before fine-tuning %.1f%%, after %.1f%%%n",
        r.examples(),
        100 * r.accuracyBefore(),
        100 * r.accuracyAfter());
    out.printf(Locale.ROOT, "eval loss: before %.4f, after %.4f%n", r.lossBefore(), r.lossAfter());
    return 0;
  }
}
