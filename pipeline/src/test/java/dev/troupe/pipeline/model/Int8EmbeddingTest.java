package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantizedTensor;
import java.nio.file.Path;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Where a model's linear layers are loaded quantized, its (untied) embedding is held as INT8 codes
 * per row: a lookup gives the dequantized rows of the FP32 embedding in the files, in the compute
 * dtype, and the frozen weights shrink by about half the embedding. A tied embedding stays dense.
 */
class Int8EmbeddingTest {
  @TempDir Path dir;

  static Tensor ids() {
    return Torch.fromLongs(new long[] {1, 5, 9, 299, 4, 5, 0, 200}, 2, 4);
  }

  @Test
  void quantizedModelLooksUpDequantizedInt8Rows() throws Exception {
    ModelConfig c = TinyConfigs.llama();
    new RandomInit(c).seed(3).std(0.1).write(dir);
    HfModel model = HfModel.open(dir);
    try (PointerScope scope = new PointerScope();
        CausalLm dense = CausalLm.load(model, ComputeDtype.BF16, null);
        CausalLm quantized = CausalLm.load(model, ComputeDtype.BF16, null, k -> QuantFormat.INT8);
        CausalLm fp32 = CausalLm.load(model, ComputeDtype.FP32, null);
        QuantizedTensor codes =
            QuantizedTensor.quantize(fp32.trainAllWeights().get(0).detach(), QuantFormat.INT8)) {
      Tensor expected =
          torch.embedding(codes.dequantize(ScalarType.Float), ids()).to(ScalarType.BFloat16);
      Tensor got = quantized.embed(ids());
      assertEquals(ScalarType.BFloat16.value, got.scalar_type().value);
      assertTrue(torch.equal(expected, got), "INT8 lookup differs from the dequantized rows");

      // close to the dense bf16 embedding: per-row absmax INT8 is within half a step of 1/127
      Tensor exact = dense.embed(ids()).to(ScalarType.Float);
      double rel =
          exact.sub(got.to(ScalarType.Float)).norm().item_double() / exact.norm().item_double();
      assertTrue(rel < 0.01, "relative error " + rel);

      long embeddingBf16 = 2L * c.vocabSize() * c.hiddenSize();
      long saved = dense.frozenWeightBytes() - quantized.frozenWeightBytes();
      // every linear layer is INT8 too; the embedding alone saves half its bf16 bytes, less scales
      assertTrue(saved > embeddingBf16 / 2, "saved " + saved);
      assertThrows(IllegalStateException.class, quantized::trainAllWeights);
    }
  }

  @Test
  void tiedEmbeddingStaysDense() throws Exception {
    ModelConfig c = TinyConfigs.of("llama", 2, true, false, 0);
    new RandomInit(c).seed(4).std(0.1).write(dir);
    HfModel model = HfModel.open(dir);
    try (PointerScope scope = new PointerScope();
        CausalLm dense = CausalLm.load(model, ComputeDtype.BF16, null);
        CausalLm quantized = CausalLm.load(model, ComputeDtype.BF16, null, k -> QuantFormat.INT8)) {
      assertTrue(torch.equal(dense.embed(ids()), quantized.embed(ids())));
    }
  }

  @Test
  void noQuantizedLayerNoInt8Embedding() throws Exception {
    ModelConfig c = TinyConfigs.llama();
    new RandomInit(c).seed(5).std(0.1).write(dir);
    HfModel model = HfModel.open(dir);
    try (PointerScope scope = new PointerScope();
        CausalLm dense = CausalLm.load(model, ComputeDtype.BF16, null);
        CausalLm none = CausalLm.load(model, ComputeDtype.BF16, null, k -> QuantFormat.NONE)) {
      assertTrue(torch.equal(dense.embed(ids()), none.embed(ids())));
      assertEquals(dense.frozenWeightBytes(), none.frozenWeightBytes());
    }
  }
}
