package dev.troupe.pipeline.model;

import static dev.troupe.pipeline.model.TestTensors.random;
import static dev.troupe.pipeline.model.TestTensors.relDiff;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.Natives;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraWeights;
import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantizedTensor;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A quantized layer's hand-made backward (gradient hooks that dequantize again) gives the gradients
 * that autograd gives for a dense layer holding the same dequantized weight: for the input and the
 * LoRA pair, over several forward/backward rounds (with an adapter, with dropout on the adapter's
 * input, without an adapter); in bf16, where INT8 scales the product instead of dequantizing, as
 * closely as a dense bf16 layer does.
 */
class QuantizedLinearBackwardTest {
  @BeforeAll
  static void load() {
    Natives.ensureLoaded();
  }

  @ParameterizedTest
  @EnumSource(
      value = QuantFormat.class,
      names = {"INT8", "NF4"})
  void gradientsMatchADenseLayerWithTheDequantizedWeight(QuantFormat format) {
    try (PointerScope scope = new PointerScope()) {
      Tensor w = random(1, 48, 80);
      QuantizedTensor q = QuantizedTensor.quantize(w, format);
      Tensor dense = Torch.keep(q.dequantize(ScalarType.Float));
      Tensor bias = Torch.keep(random(2, 48));
      Linear quantized = new Linear(q, Torch.keep(bias.clone()));
      Linear reference = new Linear(dense, bias);
      // rounds: an adapter, an adapter with dropout on its input, an adapter on an input that
      // needs no gradient (a first layer's, from frozen embeddings: no hooks, autograd through the
      // adapter alone), no adapter (the zero link)
      for (int round = 0; round < 4; round++) {
        boolean adapter = round < 3;
        boolean inputGrad = round != 2;
        double dropout = round == 1 ? 0.25 : 0.0;
        Tensor a = random(10 + round, 4, 80).mul(Torch.scalar(0.1));
        Tensor b = random(20 + round, 48, 4).mul(Torch.scalar(0.1));
        Tensor[] grads = new Tensor[6];
        Tensor[] outputs = new Tensor[2];
        Linear[] layers = {quantized, reference};
        for (int k = 0; k < 2; k++) {
          Tensor la = a.clone();
          la.set_requires_grad(true);
          Tensor lb = b.clone();
          lb.set_requires_grad(true);
          if (adapter) layers[k].attach(new LoraWeights(la, lb, 2.0), false);
          layers[k].dropout(dropout);
          Tensor x = random(30 + round, 2, 3, 80);
          x.set_requires_grad(inputGrad);
          Tensor y;
          Torch.seedThread(50 + round); // the same dropout mask in both layers
          // as in a model: the forward runs in a scope of its own, closed before the backward
          try (PointerScope layerScope = new PointerScope()) {
            y = Torch.keep(layers[k].forward(x));
          }
          y.mul(random(40 + round, 2, 3, 48)).sum().backward();
          outputs[k] = y.detach();
          grads[3 * k] = inputGrad ? x.grad() : null;
          grads[3 * k + 1] = adapter ? la.grad() : null;
          grads[3 * k + 2] = adapter ? lb.grad() : null;
          layers[k].detach();
        }
        assertTrue(relDiff(outputs[0], outputs[1]) < 1e-6, "output, round " + round);
        String[] names = {"input", "lora A", "lora B"};
        for (int g = inputGrad ? 0 : 1; g < (adapter ? 3 : 1); g++) {
          double d = relDiff(grads[g], grads[3 + g]);
          assertTrue(d < 1e-6, format + " " + names[g] + " gradient differs by " + d);
        }
      }
      quantized.close();
      reference.close();
    }
  }

  /**
   * In bf16 an INT8 layer multiplies the cast codes and scales the product's output channels
   * ({@link QuantizedTensor#scalesAfterProduct}), under autograd in one {@code addcmul} with its
   * link: its output and gradients are as close to those of the dense layer with the dequantized
   * weight in FP32 as a dense bf16 layer holding the dequantized weight rounded to bf16 is, without
   * an adapter and with one (scaling 1.5, so that it rounds). (With scales not exact in bf16 they
   * were 1.3× as far.)
   */
  @ParameterizedTest
  @ValueSource(booleans = {false, true})
  void int8InBf16IsAsCloseToFp32AsADenseBf16Layer(boolean adapter) {
    try (PointerScope scope = new PointerScope()) {
      Tensor w = random(3, 96, 160).mul(Torch.scalar(0.05));
      QuantizedTensor q = QuantizedTensor.quantize(w, QuantFormat.INT8);
      assertTrue(q.scalesAfterProduct(ScalarType.BFloat16));
      Tensor dense = Torch.keep(q.dequantize(ScalarType.Float));
      Linear[] layers = {
        new Linear(q, null),
        new Linear(Torch.keep(dense.to(ScalarType.BFloat16)), null),
        new Linear(dense, null)
      };
      ScalarType[] dtypes = {ScalarType.BFloat16, ScalarType.BFloat16, ScalarType.Float};
      Tensor input = random(4, 2, 64, 160).to(ScalarType.BFloat16); // the same values for all
      Tensor upstream = random(5, 2, 64, 96);
      Tensor a = random(6, 8, 160).mul(Torch.scalar(0.1));
      Tensor b = random(7, 96, 8).mul(Torch.scalar(0.1));
      String[] names = {"output", "input gradient", "lora A gradient", "lora B gradient"};
      Tensor[][] results = new Tensor[3][adapter ? 4 : 2];
      for (int k = 0; k < 3; k++) {
        Tensor x = input.to(dtypes[k]).clone(); // a leaf of its own
        x.set_requires_grad(true);
        Tensor la = a.clone();
        Tensor lb = b.clone();
        la.set_requires_grad(true);
        lb.set_requires_grad(true);
        // FP32 masters, cast to the compute dtype in the forward, as the trainer lends them
        if (adapter) layers[k].attach(new LoraWeights(la, lb, 1.5), false);
        Tensor y;
        try (PointerScope layerScope = new PointerScope()) {
          y = Torch.keep(layers[k].forward(x));
        }
        y.to(ScalarType.Float).mul(upstream).sum().backward();
        results[k][0] = y.detach().to(ScalarType.Float);
        results[k][1] = x.grad().to(ScalarType.Float);
        if (adapter) {
          results[k][2] = la.grad();
          results[k][3] = lb.grad();
        }
        layers[k].detach();
      }
      for (int r = 0; r < results[0].length; r++) {
        double int8 = relDiff(results[0][r], results[2][r]);
        double denseBf16 = relDiff(results[1][r], results[2][r]);
        System.out.printf(
            "bf16 against FP32, adapter %s: %s int8 %.3e dense %.3e%n",
            adapter, names[r], int8, denseBf16);
        assertTrue(denseBf16 > 0, names[r] + ": bf16 rounds");
        assertTrue(int8 < 1.15 * denseBf16, names[r] + ": " + int8 + " against " + denseBf16);
      }
      for (Linear layer : layers) layer.close();
    }
  }
}
