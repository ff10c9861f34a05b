package dev.troupe.cli;

import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.PeftAdapter;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.HfModel;
import dev.troupe.pipeline.quant.QuantFormat;
import java.io.IOException;
import java.nio.file.Path;

/**
 * The options {@code score}, {@code generate} and {@code eval} share: model, adapter, dtype,
 * threads, and the format the base's decoder linear layers are held in ({@code --quantize}).
 */
record ModelOptions(
    Path model, Path adapter, ComputeDtype dtype, int threads, QuantFormat quantize) {
  static final java.util.Set<String> NAMES =
      java.util.Set.of("model", "adapter", "dtype", "threads", "quantize");

  ModelOptions(Path model, Path adapter, ComputeDtype dtype, int threads) {
    this(model, adapter, dtype, threads, QuantFormat.NONE);
  }

  static ModelOptions from(String command, Args args) {
    ComputeDtype dtype;
    try {
      dtype = ComputeDtype.parse(args.get("dtype", "fp32"));
    } catch (IllegalArgumentException e) {
      throw new UsageException(command + ": --dtype: " + e.getMessage());
    }
    QuantFormat quantize;
    try {
      quantize = QuantFormat.parse(args.get("quantize", "none"));
    } catch (IllegalArgumentException e) {
      throw new UsageException(command + ": --quantize: " + e.getMessage());
    }
    return new ModelOptions(
        args.path("model"),
        args.has("adapter") ? args.path("adapter") : null,
        dtype,
        args.intValue("threads", 0, 1),
        quantize);
  }

  /** Loads the model (and adapter) as these options say; the caller closes all three. */
  Loaded load() throws IOException {
    Torch.init();
    if (threads > 0) org.bytedeco.pytorch.global.torch.set_num_threads(threads);
    HfModel hf = HfModel.open(model);
    PeftAdapter peft = null;
    try {
      peft = adapter == null ? null : PeftAdapter.open(adapter);
      return new Loaded(hf, peft, CausalLm.load(hf, dtype, peft, k -> quantize));
    } catch (IOException | RuntimeException e) {
      if (peft != null) peft.close();
      hf.close();
      throw e;
    }
  }

  /** A loaded model with what it was loaded from. */
  record Loaded(HfModel hf, PeftAdapter adapter, CausalLm lm) implements AutoCloseable {
    @Override
    public void close() throws IOException {
      lm.close();
      if (adapter != null) adapter.close();
      hf.close();
    }
  }
}
