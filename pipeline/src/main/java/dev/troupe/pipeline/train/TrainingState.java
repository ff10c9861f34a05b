package dev.troupe.pipeline.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.troupe.pipeline.checkpoint.Checkpoint;
import dev.troupe.pipeline.checkpoint.CheckpointStore;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraParameters;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.SafetensorsFile;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import org.bytedeco.pytorch.Tensor;

/**
 * What a checkpoint holds to continue a run exactly: the LoRA masters ({@code
 * adapter_model.safetensors}, PEFT names), AdamW's moments ({@code optimizer.safetensors}) and
 * {@code state.json}: the optimizer step (which is also the position in the data, since step s
 * reads examples s·G … s·G+G−1 of the data plan), the loss scaler, the precision phase and, with a
 * quantized base, each layer's format and calm-check count. The random state needs no saving: each
 * step seeds libtorch's generator with seed + step.
 */
public record TrainingState(long step, LossScaler scaler, String precision, QuantState quant) {

  /** A state without quantized layers. */
  public TrainingState(long step, LossScaler scaler, String precision) {
    this(step, scaler, precision, null);
  }

  static final String ADAPTER = "adapter_model.safetensors";
  static final String OPTIMIZER = "optimizer.safetensors";
  static final String STATE = "state.json";

  /** Writes a checkpoint of this state with the parameters' and optimizer's current values. */
  void save(CheckpointStore store, LoraParameters lora, AdamW optimizer) throws IOException {
    SortedMap<String, TensorData> moments = moments(lora, optimizer);
    ObjectNode json = new ObjectMapper().createObjectNode();
    json.put("format", 1);
    json.put("step", step);
    json.put("optimizer_step", optimizer.stepCount());
    json.put("loss_scale", scaler.scale());
    json.put("growth_tracker", scaler.growthTracker());
    json.put("precision", precision);
    if (quant != null) json.set("quantization", quant.toJson());
    store.save(step, Map.of(ADAPTER, lora.toTensors(), OPTIMIZER, moments), Map.of(STATE, json));
  }

  private static SortedMap<String, TensorData> moments(LoraParameters lora, AdamW optimizer) {
    SortedMap<String, TensorData> moments = new TreeMap<>();
    List<String> names = lora.names();
    for (int i = 0; i < names.size(); i++) {
      moments.put("exp_avg." + names.get(i), f32(optimizer.expAvg().get(i)));
      moments.put("exp_avg_sq." + names.get(i), f32(optimizer.expAvgSq().get(i)));
    }
    return moments;
  }

  /** This state with the parameters' and optimizer's current values, in memory. */
  StateCopy copy(LoraParameters lora, AdamW optimizer) {
    SortedMap<String, TensorData> tensors = lora.toTensors();
    tensors.putAll(moments(lora, optimizer));
    return new StateCopy(
        step,
        tensors,
        optimizer.stepCount(),
        scaler.scale(),
        scaler.growthTracker(),
        quant == null ? "" : quant.toJson().toString());
  }

  /**
   * Restores parameters and optimizer from a copy held in memory and returns its state ({@code
   * precision} is the phase of the step it continues with).
   *
   * @throws IOException naming the tensor or layer the copy lacks or has in another shape
   */
  static TrainingState restore(
      StateCopy c,
      LoraParameters lora,
      AdamW optimizer,
      QuantState fresh,
      int layers,
      String precision)
      throws IOException {
    String where = "copy of the state after step " + c.step();
    List<Tensor> m = new ArrayList<>();
    List<Tensor> v = new ArrayList<>();
    try {
      lora.load(c.tensors(), where);
      List<Tensor> params = lora.parameters();
      List<String> names = lora.names();
      for (int i = 0; i < names.size(); i++) {
        long[] shape = Torch.shape(params.get(i));
        m.add(tensor(c, "exp_avg." + names.get(i), shape, where));
        v.add(tensor(c, "exp_avg_sq." + names.get(i), shape, where));
      }
      optimizer.restore(m, v, c.optimizerStep());
    } finally {
      m.forEach(Tensor::close);
      v.forEach(Tensor::close);
    }
    QuantState quant = fresh;
    if (fresh != null && !c.quantization().isEmpty()) {
      quant = QuantState.fromJson(new ObjectMapper().readTree(c.quantization()), layers, where);
    }
    return new TrainingState(
        c.step(), new LossScaler(c.lossScale(), c.growthTracker()), precision, quant);
  }

  private static Tensor tensor(StateCopy c, String name, long[] shape, String where)
      throws IOException {
    TensorData d = c.tensors().get(name);
    if (d == null) throw new IOException(where + " has no tensor " + name);
    if (d.dtype() != DType.F32 || !java.util.Arrays.equals(d.shape(), shape)) {
      throw new IOException(
          where
              + ": "
              + name
              + " is "
              + d.dtype()
              + java.util.Arrays.toString(d.shape())
              + ", expected F32"
              + java.util.Arrays.toString(shape));
    }
    return Torch.fromBytes(d.bytes(), DType.F32, shape);
  }

  /** Restores parameters and optimizer from a checkpoint and returns its state. */
  static TrainingState restore(
      Checkpoint c, LoraParameters lora, AdamW optimizer, QuantState fresh, int layers)
      throws IOException {
    JsonNode json = c.json(STATE);
    try (SafetensorsFile adapter = c.tensors(ADAPTER);
        SafetensorsFile moments = c.tensors(OPTIMIZER)) {
      lora.load(adapter);
      List<Tensor> m = new ArrayList<>();
      List<Tensor> v = new ArrayList<>();
      List<Tensor> params = lora.parameters();
      List<String> names = lora.names();
      for (int i = 0; i < names.size(); i++) {
        long[] shape = Torch.shape(params.get(i));
        m.add(Torch.fromBytes(moments.data("exp_avg." + names.get(i)), DType.F32, shape));
        v.add(Torch.fromBytes(moments.data("exp_avg_sq." + names.get(i)), DType.F32, shape));
      }
      optimizer.restore(m, v, json.path("optimizer_step").asLong());
      m.forEach(Tensor::close);
      v.forEach(Tensor::close);
    }
    return new TrainingState(
        json.path("step").asLong(),
        new LossScaler(json.path("loss_scale").asDouble(), json.path("growth_tracker").asInt()),
        json.path("precision").asText(),
        fresh == null
            ? null
            : json.has("quantization")
                ? QuantState.fromJson(
                    json.get("quantization"), layers, c.dir().resolve(STATE).toString())
                : fresh);
  }

  /**
   * Writes a checkpoint in the same format from tensors gathered elsewhere (the stages of a
   * distributed run): {@code adapter} keyed by PEFT names, {@code moments} by {@code exp_avg.NAME}
   * and {@code exp_avg_sq.NAME}.
   */
  public static Path save(
      CheckpointStore store,
      long step,
      LossScaler scaler,
      String precision,
      long optimizerStep,
      SortedMap<String, TensorData> adapter,
      SortedMap<String, TensorData> moments,
      QuantState quant)
      throws IOException {
    ObjectNode json = new ObjectMapper().createObjectNode();
    json.put("format", 1);
    json.put("step", step);
    json.put("optimizer_step", optimizerStep);
    json.put("loss_scale", scaler.scale());
    json.put("growth_tracker", scaler.growthTracker());
    json.put("precision", precision);
    if (quant != null) json.set("quantization", quant.toJson());
    return store.save(step, Map.of(ADAPTER, adapter, OPTIMIZER, moments), Map.of(STATE, json));
  }

  /**
   * A checkpoint read whole, for a distributed run to hand each stage its part: the state, AdamW's
   * step count, and every tensor of the adapter and the optimizer file (copied out of the files).
   */
  public record Saved(
      TrainingState state,
      long optimizerStep,
      SortedMap<String, TensorData> tensors,
      String quantization) {}

  /** Reads checkpoint {@code c} whole (see {@link Saved}). */
  public static Saved read(Checkpoint c) throws IOException {
    JsonNode json = c.json(STATE);
    SortedMap<String, TensorData> tensors = new TreeMap<>();
    for (String file : List.of(ADAPTER, OPTIMIZER)) {
      try (SafetensorsFile f = c.tensors(file)) {
        for (String name : f.names()) {
          java.nio.ByteBuffer src = f.data(name);
          java.nio.ByteBuffer copy =
              java.nio.ByteBuffer.allocate(src.remaining()).order(java.nio.ByteOrder.LITTLE_ENDIAN);
          copy.put(src).flip();
          tensors.put(name, new TensorData(f.info(name).dtype(), f.info(name).shape(), copy));
        }
      }
    }
    TrainingState state =
        new TrainingState(
            json.path("step").asLong(),
            new LossScaler(json.path("loss_scale").asDouble(), json.path("growth_tracker").asInt()),
            json.path("precision").asText());
    String quant = json.has("quantization") ? json.get("quantization").toString() : "";
    return new Saved(state, json.path("optimizer_step").asLong(), tensors, quant);
  }

  private static TensorData f32(Tensor t) {
    return new TensorData(DType.F32, Torch.shape(t), Torch.toBytes(t));
  }
}
