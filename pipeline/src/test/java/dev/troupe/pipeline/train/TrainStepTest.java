package dev.troupe.pipeline.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.data.Example;
import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraParameters;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.HfModel;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.model.RandomInit;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TrainStepTest {
  @TempDir static Path dir;
  static HfModel model;
  static final List<Example> EXAMPLES = new ArrayList<>();

  @BeforeAll
  static void setUp() throws Exception {
    ModelConfig c =
        new ModelConfig(
            "llama",
            300,
            64,
            96,
            2,
            4,
            2,
            16,
            1e-6,
            1e4,
            false,
            false,
            false,
            false,
            0,
            128,
            List.of(2L),
            1);
    new RandomInit(c).seed(1).std(0.1).write(dir);
    model = HfModel.open(dir);
    Random r = new Random(7);
    for (int i = 0; i < 4; i++) {
      int len = 6 + 2 * i; // unequal lengths: padding and unequal token counts per microbatch
      long[] ids = new long[len];
      long[] labels = new long[len];
      for (int t = 0; t < len; t++) {
        ids[t] = 3 + r.nextInt(290);
        labels[t] = t < 2 ? -100 : ids[t];
      }
      EXAMPLES.add(new Example(ids, labels));
    }
  }

  @AfterAll
  static void tearDown() throws Exception {
    model.close();
  }

  /**
   * LoRA params after 3 steps with the global batch of 4 cut into microbatches of {@code micro}.
   */
  static float[] train(int micro, List<Double> losses) throws Exception {
    return train(micro, losses, false, 0.0);
  }

  static float[] train(int micro, List<Double> losses, boolean checkpointing, double dropout)
      throws Exception {
    try (CausalLm lm = CausalLm.load(model, ComputeDtype.FP32, null);
        LoraParameters lora =
            LoraParameters.initialize(
                model.config(),
                4,
                8,
                EnumSet.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ, LoraTarget.DOWN_PROJ),
                3);
        AdamW opt = new AdamW(lora.parameters(), 0.9, 0.999, 1e-8, 0.01)) {
      lm.lendLora(lora.weights(), dropout);
      for (int step = 0; step < 3; step++) {
        List<Batch> batches = new ArrayList<>();
        for (int i = 0; i < 4; i += micro)
          batches.add(Batch.of(EXAMPLES.subList(i, i + micro), 16, 0));
        TrainStep.Result r =
            TrainStep.run(lm, lora, opt, batches, 1e-2, 1.0, 1.0, 100 + step, checkpointing);
        assertFalse(r.skipped());
        losses.add(r.loss());
      }
      float[] out = new float[0];
      for (var p : lora.parameters()) {
        float[] v = Torch.toFloats(p.detach());
        float[] joined = java.util.Arrays.copyOf(out, out.length + v.length);
        System.arraycopy(v, 0, joined, out.length, v.length);
        out = joined;
      }
      return out;
    }
  }

  @Test
  void stepResultDoesNotDependOnTheMicrobatchSize() throws Exception {
    List<Double> whole = new ArrayList<>();
    List<Double> ones = new ArrayList<>();
    float[] a = train(4, whole);
    float[] b = train(1, ones);
    for (int i = 0; i < 3; i++) assertEquals(whole.get(i), ones.get(i), 1e-6 * whole.get(i));
    float worst = 0;
    for (int i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assertTrue(worst < 1e-6, "parameters differ by " + worst);
    assertTrue(whole.get(2) < whole.get(0), "training lowers the loss: " + whole);
  }

  @Test
  void gradientCheckpointingGivesTheSameGradients() throws Exception {
    // dropout 0.1: the recomputed layers must draw the same masks as their first forward
    List<Double> kept = new ArrayList<>();
    List<Double> recomputed = new ArrayList<>();
    float[] a = train(2, kept, false, 0.1);
    float[] b = train(2, recomputed, true, 0.1);
    assertEquals(kept, recomputed);
    float worst = 0;
    for (int i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assertTrue(worst < 1e-6, "parameters differ by " + worst);
    List<Double> noDropout = new ArrayList<>();
    train(2, noDropout, false, 0.0);
    assertTrue(!noDropout.get(2).equals(kept.get(2)), "dropout 0.1 changes the trajectory");
  }

  @Test
  void freshAdaptersLeaveTheModelUnchanged() throws Exception {
    try (CausalLm lm = CausalLm.load(model, ComputeDtype.FP32, null);
        LoraParameters lora =
            LoraParameters.initialize(model.config(), 4, 8, EnumSet.allOf(LoraTarget.class), 3)) {
      long[] ids = EXAMPLES.get(0).inputIds();
      float[] before = Torch.toFloats(lm.forward(Torch.fromLongs(ids, 1, ids.length)));
      lm.lendLora(lora.weights(), 0.0);
      float[] after = Torch.toFloats(lm.forward(Torch.fromLongs(ids, 1, ids.length)));
      assertTrue(java.util.Arrays.equals(before, after), "B = 0 at initialisation");
      // r (in + out) per module: q 4*128, k and v 4*96, o 4*128, gate and up 4*160, down 4*160
      assertEquals(2 * (512 + 384 + 384 + 512 + 640 + 640 + 640), lora.count());
    }
  }

  @Test
  void aTrainedHeadOrOneWithFp32ProductsRunsInChunksOfAtLeast512Rows() throws Exception {
    long small = Math.max(1, TrainStep.HEAD_CHUNK_VALUES / model.config().vocabSize());
    try (CausalLm lm = CausalLm.load(model, ComputeDtype.BF16, null)) {
      assertFalse(lm.headTrained(), "a loaded model's head is frozen");
      assertEquals(small, TrainStep.headChunkRows(lm), "frozen, bf16");
    }
    for (ComputeDtype dtype : new ComputeDtype[] {ComputeDtype.FP32, ComputeDtype.FP16}) {
      try (CausalLm lm = CausalLm.load(model, dtype, null)) {
        assertEquals(Math.max(small, 512), TrainStep.headChunkRows(lm), "frozen, " + dtype);
      }
    }
    try (CausalLm lm = CausalLm.load(model, ComputeDtype.BF16, null)) {
      lm.trainAllWeights();
      assertTrue(lm.headTrained(), "full fine-tuning trains the head");
      assertEquals(Math.max(small, 512), TrainStep.headChunkRows(lm), "trained, bf16");
    }
  }

  @Test
  void theHeadInChunksGivesTheLossAndGradientOfTheWholeBatch() throws Exception {
    try (CausalLm lm = CausalLm.load(model, ComputeDtype.FP32, null);
        org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope()) {
      Batch b = Batch.of(EXAMPLES.subList(0, 4), 16, 0);
      org.bytedeco.pytorch.Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
      org.bytedeco.pytorch.Tensor h = lm.embed(Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen()));
      double[] losses = new double[2];
      org.bytedeco.pytorch.Tensor[] grads = new org.bytedeco.pytorch.Tensor[2];
      long[] chunks = {b.rows() * (long) b.seqLen(), 5}; // one chunk; 5 rows, splitting sequences
      for (int k = 0; k < 2; k++) {
        org.bytedeco.pytorch.Tensor top = h.detach().clone();
        top.set_requires_grad(true);
        losses[k] = TrainStep.headForwardBackward(lm, top, labels, 0.5, chunks[k]);
        grads[k] = top.grad();
      }
      org.bytedeco.pytorch.Tensor whole =
          CausalLmLoss.sum(lm.logits(h.detach()), labels); // the unshifted reference path
      assertEquals(whole.item_double(), losses[0], 1e-4);
      assertEquals(losses[0], losses[1], 1e-4);
      double diff =
          org.bytedeco
              .pytorch
              .global
              .torch
              .max(org.bytedeco.pytorch.global.torch.abs(grads[0].sub(grads[1])))
              .item_double();
      assertTrue(diff < 1e-6, "gradients differ by " + diff);
    }
  }
}
