package dev.troupe.cli;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.AdapterMerge;
import dev.troupe.pipeline.lora.PeftAdapter;
import dev.troupe.pipeline.model.HfModel;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

/** {@code troupe merge}: a PEFT adapter folded into its base model, in Hugging Face layout. */
final class MergeCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Args args = Args.parse("merge", argv, Set.of("model", "adapter", "out"), Set.of());
    Path outDir = args.path("out");
    Torch.init();
    try (HfModel model = HfModel.open(args.path("model"));
        PeftAdapter adapter = PeftAdapter.open(args.path("adapter"))) {
      int n = AdapterMerge.merge(model, adapter, outDir);
      out.println("merged " + n + " adapted layers into " + outDir);
    }
    return 0;
  }
}
