package dev.troupe.pipeline.lora;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.model.HfModel;
import dev.troupe.pipeline.safetensors.SafetensorsWriter;
import dev.troupe.pipeline.safetensors.TensorData;
import dev.troupe.pipeline.safetensors.TensorInfo;
import dev.troupe.pipeline.safetensors.TensorSource;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Folds a LoRA adapter into its base model: {@code W' = W + scaling * B A} for every adapted linear
 * layer, computed in FP32 and stored in the weight's own dtype. The result is a Hugging Face folder
 * that needs no adapter (and no Troupe) to load.
 */
public final class AdapterMerge {
  private static final Pattern WEIGHT =
      Pattern.compile("model\\.layers\\.(\\d+)\\.(self_attn|mlp)\\.(\\w+_proj)\\.weight");
  private static final List<String> COPIED =
      // config.json last: a folder is a model once it has one
      List.of(
          "generation_config.json",
          "tokenizer.json",
          "tokenizer_config.json",
          "special_tokens_map.json",
          "config.json");

  private AdapterMerge() {}

  /**
   * Writes the merged model to {@code out}, which must not hold a model yet; returns the merged
   * layer count.
   */
  public static int merge(HfModel model, PeftAdapter adapter, Path out) throws IOException {
    adapter.validate(model.config());
    if (Files.exists(out.resolve("config.json"))) {
      throw new IOException(out + ": already holds a model (config.json); choose another folder");
    }
    Files.createDirectories(out);
    TensorSource weights = model.weights();
    SortedMap<String, TensorData> merged = new TreeMap<>();
    int count = 0;
    Torch.init();
    for (String name : weights.names()) {
      TensorInfo info = weights.info(name);
      Matcher m = WEIGHT.matcher(name);
      LoraTarget target = m.matches() ? LoraTarget.fromModuleName(m.group(3)) : null;
      String[] keys = target == null ? null : adapter.keys(Integer.parseInt(m.group(1)), target);
      if (keys == null) {
        merged.put(name, new TensorData(info.dtype(), info.shape(), weights.data(name)));
        continue;
      }
      try (PointerScope scope = new PointerScope()) {
        Tensor w =
            Torch.fromBytes(weights.data(name), info.dtype(), info.shape()).to(ScalarType.Float);
        TensorInfo ai = adapter.weights().info(keys[0]);
        TensorInfo bi = adapter.weights().info(keys[1]);
        Tensor a =
            Torch.fromBytes(adapter.weights().data(keys[0]), ai.dtype(), ai.shape())
                .to(ScalarType.Float);
        Tensor b =
            Torch.fromBytes(adapter.weights().data(keys[1]), bi.dtype(), bi.shape())
                .to(ScalarType.Float);
        if (b.size(0) != w.size(0) || a.size(1) != w.size(1) || a.size(0) != b.size(1)) {
          throw new IOException(
              adapter.dir()
                  + ": "
                  + keys[0]
                  + " / "
                  + keys[1]
                  + " do not fit "
                  + name
                  + " "
                  + java.util.Arrays.toString(info.shape()));
        }
        Tensor sum = w.add(torch.matmul(b, a), Torch.scalar(adapter.scaling()));
        merged.put(
            name,
            new TensorData(
                info.dtype(), info.shape(), Torch.toBytes(sum.to(Torch.scalarType(info.dtype())))));
        count++;
      }
    }
    SafetensorsWriter.write(out.resolve("model.safetensors"), merged, Map.of("format", "pt"));
    for (String f : COPIED) {
      Path src = model.dir().resolve(f);
      if (Files.isRegularFile(src))
        Files.copy(src, out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
    }
    return count;
  }
}
