package dev.troupe.cli;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.SafetensorsWriter;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;

/** {@code troupe score}: float32 logits of token-id sequences, written as safetensors. */
final class ScoreCommand implements Main.Command {
  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Set<String> names = new HashSet<>(ModelOptions.NAMES);
    names.addAll(Set.of("ids", "out"));
    Args args = Args.parse("score", argv, names, Set.of());
    ModelOptions options = ModelOptions.from("score", args);
    String idText = args.require("ids");
    Path outFile = args.path("out");
    try (ModelOptions.Loaded loaded = options.load()) {
      long[][] batch = TokenIds.parseBatch("--ids", idText, loaded.hf().config().vocabSize());
      long[] flat = Arrays.stream(batch).flatMapToLong(Arrays::stream).toArray();
      long[] shape;
      java.nio.ByteBuffer bytes;
      try (PointerScope scope = new PointerScope();
          Tensor logits =
              loaded.lm().forward(Torch.fromLongs(flat, batch.length, batch[0].length))) {
        shape = Torch.shape(logits);
        bytes = Torch.toBytes(logits);
      }
      SafetensorsWriter.write(
          outFile,
          new TreeMap<>(Map.of("logits", new TensorData(DType.F32, shape, bytes))),
          Map.of("model", options.model().toString(), "dtype", options.dtype().label()));
      out.println(
          "wrote logits "
              + Arrays.toString(shape)
              + " ("
              + options.dtype().label()
              + ") to "
              + outFile);
    }
    return 0;
  }
}
