package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.Natives;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraWeights;
import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantizedTensor;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A quantized layer's hand-made backward (gradient hooks that dequantize again) gives the gradients
 * that autograd gives for a dense layer holding the same dequantized weight: for the input and the
 * LoRA pair, over several forward/backward rounds.
 */
class QuantizedLinearBackwardTest {
  @BeforeAll
  static void load() {
    Natives.ensureLoaded();
  }

  private static Tensor random(long seed, long... shape) {
    torch.manual_seed(seed);
    return torch.randn(shape);
  }

  private static double relDiff(Tensor a, Tensor b) {
    return torch.linalg_vector_norm(a.sub(b)).item_double()
        / torch.linalg_vector_norm(b).item_double();
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
      for (int round = 0; round < 3; round++) {
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
          layers[k].attach(new LoraWeights(la, lb, 2.0), false);
          Tensor x = random(30 + round, 2, 3, 80);
          x.set_requires_grad(true);
          Tensor y;
          // as in a model: the forward runs in a scope of its own, closed before the backward
          try (PointerScope layerScope = new PointerScope()) {
            y = Torch.keep(layers[k].forward(x));
          }
          y.mul(random(40 + round, 2, 3, 48)).sum().backward();
          outputs[k] = y.detach();
          grads[3 * k] = x.grad();
          grads[3 * k + 1] = la.grad();
          grads[3 * k + 2] = lb.grad();
          layers[k].detach();
        }
        assertTrue(relDiff(outputs[0], outputs[1]) < 1e-6, "output, round " + round);
        String[] names = {"input", "lora A", "lora B"};
        for (int g = 0; g < 3; g++) {
          double d = relDiff(grads[g], grads[3 + g]);
          assertTrue(d < 1e-6, format + " " + names[g] + " gradient differs by " + d);
        }
      }
      quantized.close();
      reference.close();
    }
  }
}
