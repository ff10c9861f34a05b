package dev.troupe.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.pipeline.model.ModelPreset;
import dev.troupe.pipeline.model.RandomInit;
import dev.troupe.pipeline.safetensors.DType;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/** {@code troupe init-model}: a randomly initialised model in Hugging Face layout. */
final class InitModelCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Args args =
        Args.parse(
            "init-model",
            argv,
            Set.of("preset", "out", "seed", "weights-dtype", "max-shard-mb"),
            Set.of());
    ModelPreset preset;
    try {
      preset = ModelPreset.parse(args.require("preset"));
    } catch (IllegalArgumentException e) {
      throw new UsageException("init-model: " + e.getMessage());
    }
    Path dir = args.path("out");
    DType storage;
    try {
      storage = DType.fromCode(args.get("weights-dtype", "f32").toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new UsageException("init-model: --weights-dtype must be f32, bf16 or f16");
    }
    long seed = args.longValue("seed", 0);
    int shardMb = args.intValue("max-shard-mb", 0, 0);
    RandomInit init =
        new RandomInit(preset.config())
            .preset(preset.label())
            .seed(seed)
            .maxShardBytes(shardMb * 1024L * 1024L);
    try {
      init.storage(storage);
    } catch (IllegalArgumentException e) {
      throw new UsageException("init-model: " + e.getMessage());
    }
    String what = preset.label() + " model (seed " + seed + ", " + storage + " weights)";
    Path config = dir.resolve("config.json");
    if (Files.exists(config)) {
      // The same request again keeps what is there; anything else would overwrite a model.
      JsonNode existing = new ObjectMapper().readTree(config.toFile()).path("troupe_init");
      if (existing.toString().equals(init.provenance().toString())) {
        out.println(dir + " already holds this " + what + "; keeping it");
        return 0;
      }
      throw new UsageException(
          "init-model: " + dir + " already holds a different model; choose another --out");
    }
    init.write(dir);
    out.println("wrote " + what + " to " + dir);
    return 0;
  }
}
