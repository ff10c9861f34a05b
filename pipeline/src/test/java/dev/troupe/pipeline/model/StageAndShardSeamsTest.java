package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The seams later work builds on: a model cut into pipeline stages, or split into tensor shards
 * whose partial sums an all-reduce completes, computes what the whole model computes.
 */
class StageAndShardSeamsTest {
  static final long[] IDS = {1, 5, 9, 3, 4, 5, 7, 200, 33, 2, 8, 11};
  @TempDir static Path dir;
  static HfModel model;
  static float[] expected;

  @BeforeAll
  static void writeModel() throws Exception {
    // Llama with attention and MLP biases: the row-parallel bias must be added once, after the
    // reduce.
    ModelConfig c =
        new ModelConfig(
            "llama",
            300,
            64,
            96,
            4,
            4,
            2,
            16,
            1e-6,
            10000.0,
            false,
            true,
            true,
            true,
            0,
            128,
            List.of(2L),
            1);
    new RandomInit(c).seed(11).std(0.1).write(dir);
    model = HfModel.open(dir);
    try (CausalLm lm = CausalLm.load(model, ComputeDtype.FP32, null);
        Tensor logits = lm.forward(ids())) {
      expected = Torch.toFloats(logits);
    }
  }

  @AfterAll
  static void closeModel() throws Exception {
    model.close();
  }

  static Tensor ids() {
    return Torch.fromLongs(IDS, 2, 6);
  }

  @Test
  void twoPipelineStagesComputeTheWholeModel() throws Exception {
    ModelConfig c = model.config();
    try (CausalLm first =
            CausalLm.load(
                c,
                model.weights(),
                ComputeDtype.FP32,
                StageSpec.of(c, 0, 1),
                ShardSpec.NONE,
                null);
        CausalLm last =
            CausalLm.load(
                c,
                model.weights(),
                ComputeDtype.FP32,
                StageSpec.of(c, 1, 4),
                ShardSpec.NONE,
                null);
        PointerScope scope = new PointerScope()) {
      // what travels between stages is the hidden state [batch, seq, hidden]
      Tensor hidden = first.forwardLayers(first.embed(ids()), AllReduce.NONE);
      float[] got = Torch.toFloats(last.logits(last.forwardLayers(hidden, AllReduce.NONE)));
      assertClose(expected, got, 1e-5f);
    }
  }

  @Test
  void twoTensorShardsWithAnAllReduceComputeTheWholeModel() throws Exception {
    ModelConfig c = model.config();
    CyclicBarrier barrier = new CyclicBarrier(2);
    Tensor[] slots = new Tensor[2];
    ExecutorService pool = Executors.newFixedThreadPool(2);
    try {
      List<Future<float[]>> results = new ArrayList<>();
      for (int rank = 0; rank < 2; rank++) {
        int r = rank;
        results.add(
            pool.submit(
                () -> {
                  AllReduce sum =
                      partial -> {
                        try {
                          slots[r] = partial.clone();
                          barrier.await();
                          Tensor total = slots[0].add(slots[1]);
                          barrier.await();
                          partial.copy_(total);
                        } catch (Exception e) {
                          throw new IllegalStateException(e);
                        }
                      };
                  try (CausalLm shard =
                          CausalLm.load(
                              c,
                              model.weights(),
                              ComputeDtype.FP32,
                              StageSpec.full(c),
                              new ShardSpec(r, 2),
                              null);
                      PointerScope scope = new PointerScope()) {
                    return Torch.toFloats(
                        shard.logits(shard.forwardLayers(shard.embed(ids()), sum)));
                  }
                }));
      }
      for (Future<float[]> f : results) assertClose(expected, f.get(), 1e-5f);
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void shardsMustDivideTheHeadsAndTheMlp() {
    ModelConfig c = model.config();
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () ->
                CausalLm.load(
                    c,
                    model.weights(),
                    ComputeDtype.FP32,
                    StageSpec.full(c),
                    new ShardSpec(0, 4),
                    null));
    assertEquals("tensor parallel size 4 does not divide num_key_value_heads 2", e.getMessage());
  }

  static void assertClose(float[] want, float[] got, float tol) {
    assertEquals(want.length, got.length);
    float worst = 0;
    for (int i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(want[i] - got[i]));
    if (worst > tol) throw new AssertionError("max abs difference " + worst + " > " + tol);
  }
}
