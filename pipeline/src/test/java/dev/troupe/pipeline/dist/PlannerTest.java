package dev.troupe.pipeline.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.dist.Planner.Choice;
import dev.troupe.pipeline.dist.Planner.Device;
import dev.troupe.pipeline.dist.Planner.Workload;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.job.ParallelSettings;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.model.ModelConfig;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The planner's choices on small made-up models; no libtorch. */
class PlannerTest {
  static final long MIB = 1L << 20;
  static final long GIB = 1L << 30;

  /** Hidden 256, 4 query heads of 64. */
  static ModelConfig model(int layers, int vocab, int kvHeads, int intermediate, boolean tied) {
    return model(layers, vocab, 256, 4, kvHeads, intermediate, tied);
  }

  static ModelConfig model(
      int layers, int vocab, int hidden, int heads, int kvHeads, int intermediate, boolean tied) {
    return new ModelConfig(
        "llama",
        vocab,
        hidden,
        intermediate,
        layers,
        heads,
        kvHeads,
        hidden / heads,
        1e-5,
        10000.0,
        tied,
        false,
        false,
        false,
        0,
        2048,
        List.of(2L),
        1);
  }

  /** 8 layers, vocab 8000: the head costs about two layers of compute. */
  static final ModelConfig EIGHT = model(8, 8000, 4, 688, false);

  /** FP32, LoRA rank 8 on q and v. */
  static Workload work(ModelConfig m, int seq, int micro, int global) {
    return new Workload(
        m, seq, micro, global, 8, List.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ), 4, 4);
  }

  static final Workload SMALL_BATCH = work(EIGHT, 16, 1, 8);

  static List<Device> devices(int n, long memory) {
    List<Device> out = new ArrayList<>();
    for (int i = 0; i < n; i++) out.add(new Device("cpu:" + i, "n1", memory, 8));
    return out;
  }

  static Choice plan(Workload w, ParallelSettings s, List<Device> devices) {
    return Planner.plan(w, s, devices);
  }

  static void assertContiguous(Plan p, int layers) {
    int[] b = p.boundaries();
    assertEquals(0, b[0]);
    assertEquals(layers, b[p.pp()]);
    for (int s = 0; s < p.pp(); s++) assertTrue(b[s] < b[s + 1], p.toString());
  }

  /** Memory the single-device plan needs, per the cost model. */
  static double wholeModelBytes(Workload w) {
    return PlanCost.evaluate(w, 1, 1, 1, devices(1, 1L << 50)).stageBytes[0];
  }

  @ParameterizedTest(name = "pp={0}")
  @CsvSource({"2", "3", "4"})
  void aBigHeadPushesTheLastStageToFewerLayers(int pp) {
    Choice c = plan(work(EIGHT, 128, 4, 16), ParallelSettings.fixed(pp, 1, 1), devices(pp, GIB));
    Plan p = c.plan();
    assertContiguous(p, 8);
    int last = p.endLayer(pp - 1) - p.firstLayer(pp - 1);
    for (int s = 0; s < pp - 1; s++) {
      assertTrue(last < p.endLayer(s) - p.firstLayer(s), p.toString());
    }
    assertTrue(p.endLayer(pp - 2) > Plan.even(pp, 1, 1, 8).endLayer(pp - 2), p.toString());
  }

  @Test
  void aSmallHeadLeavesTheEvenSplit() {
    ModelConfig m = model(8, 16, 4, 688, true);
    Choice c = plan(work(m, 128, 4, 16), ParallelSettings.fixed(2, 1, 1), devices(2, GIB));
    assertEquals(Plan.even(2, 1, 1, 8), c.plan());
  }

  @ParameterizedTest(name = "{0}×{1}×{2} on {3}")
  @CsvSource({
    "1,1,1,1", "1,1,1,4", "2,1,1,2", "2,1,1,5", "1,2,1,2", "1,4,1,4", "1,1,2,2", "2,2,2,8",
    "4,1,2,8", "8,1,1,8"
  })
  void fixedPlansAreHonoured(int pp, int tp, int dp, int registered) {
    List<Device> devices = devices(registered, GIB);
    Choice c = plan(work(EIGHT, 64, 2, 16), ParallelSettings.fixed(pp, tp, dp), devices);
    Plan p = c.plan();
    assertEquals(List.of(pp, tp, dp), List.of(p.pp(), p.tp(), p.dp()));
    assertContiguous(p, 8);
    assertEquals(devices.subList(0, pp * tp * dp), c.devices());
    assertTrue(c.explanation().startsWith("plan " + pp + "×" + tp + "×" + dp), c.explanation());
    assertTrue(c.explanation().contains("fixed by the job file"), c.explanation());
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(
      delimiter = '|',
      textBlock =
          """
          fixed 2×2×1 on 3        | 2 | 2 | 1 | 3 | 1024 | 688 | parallel pp=2 tp=2 dp=1 needs 4 devices, but only 3 are registered
          tp 3 of 4 kv heads      | 1 | 3 | 1 | 3 | 1024 | 688 | parallel pp=1 tp=3 dp=1: tensor parallel size 3 does not divide num_key_value_heads 4
          tp 2 of mlp 689         | 1 | 2 | 1 | 2 | 1024 | 689 | parallel pp=1 tp=2 dp=1: tensor parallel size 2 does not divide intermediate_size 689
          9 stages of 8 layers    | 9 | 1 | 1 | 9 | 1024 | 688 | parallel pp=9 tp=1 dp=1: cannot cut 8 decoder layers into 9 pipeline stages
          dp 3 of batch 16 by 4   | 1 | 1 | 3 | 3 | 1024 | 688 | parallel pp=1 tp=1 dp=3: batch.global 16 is not a multiple of dp × batch.micro = 3 × 4
          too little memory       | 1 | 1 | 1 | 1 | 16   | 688 | parallel pp=1 tp=1 dp=1 does not fit: stage 0 (layers [0,8) + embedding + norm + head) needs est.
          auto, too little memory | 0 | 0 | 0 | 4 | 4    | 688 | no plan fits the memory of the 4 registered devices; the closest,
          auto, no devices        | 0 | 0 | 0 | 0 | 1024 | 688 | no devices registered
          """)
  void refusals(
      String name,
      int pp,
      int tp,
      int dp,
      int registered,
      long memoryMib,
      int intermediate,
      String message) {
    Workload w = work(model(8, 8000, 4, intermediate, false), 64, 4, 16);
    ParallelSettings s = pp == 0 ? ParallelSettings.AUTO : ParallelSettings.fixed(pp, tp, dp);
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class, () -> plan(w, s, devices(registered, memoryMib * MIB)));
    assertTrue(e.getMessage().startsWith(message), e.getMessage());
  }

  @ParameterizedTest(name = "{0} devices")
  @CsvSource({"1", "2", "3", "4", "5", "8", "16"})
  void autoUsesAtMostTheDevicesGivenAndBalances(int registered) {
    List<Device> devices = devices(registered, GIB);
    Choice c = plan(work(EIGHT, 128, 2, 16), ParallelSettings.AUTO, devices);
    Plan p = c.plan();
    assertTrue(p.worldSize() <= registered, p.toString());
    assertEquals(p.worldSize(), c.devices().size());
    assertContiguous(p, 8);
    assertEquals(0, 16 % (p.dp() * 2), p.toString());
    assertEquals(0, 4 % p.tp());
    assertTrue(c.explanation().contains("est. step"), c.explanation());
    assertEquals(c, plan(work(EIGHT, 128, 2, 16), ParallelSettings.AUTO, devices), "deterministic");
  }

  @ParameterizedTest(name = "{0} devices of {1} of the whole")
  @CsvSource({"2, 0.8", "4, 0.6", "4, 0.35", "8, 0.3"})
  void aDeviceTooSmallForTheWholeModelForcesASplit(int registered, double share) {
    Workload w = SMALL_BATCH;
    long memory = (long) (wholeModelBytes(w) / PlanCost.USABLE_MEMORY * share);
    List<Device> devices = devices(registered, memory);
    assertThrows(
        IllegalArgumentException.class,
        () -> plan(w, ParallelSettings.fixed(1, 1, 1), devices),
        "the whole model does not fit one device");
    Choice c = plan(w, ParallelSettings.AUTO, devices);
    Plan p = c.plan();
    assertTrue(p.pp() > 1 || p.tp() > 1, p.toString());
    PlanCost.Evaluation e = PlanCost.evaluate(w, p.pp(), p.tp(), p.dp(), devices);
    assertNull(e.unfit);
    assertEquals(p, e.plan);
    for (int s = 0; s < p.pp(); s++) {
      assertTrue(e.stageBytes[s] <= memory * PlanCost.USABLE_MEMORY, "stage " + s);
    }
    assertTrue(c.explanation().contains("chosen over 1×1×1, which does not fit"), c.explanation());
  }

  @Test
  void memoryLimitsMoveTheBoundaries() {
    // Two stages where the first device is small: the balanced cut would not fit it.
    Workload w = SMALL_BATCH;
    double whole = wholeModelBytes(w);
    long small = (long) (whole * 0.3 / PlanCost.USABLE_MEMORY);
    List<Device> devices =
        List.of(new Device("cpu:0", "n1", small, 8), new Device("cpu:1", "n1", GIB, 8));
    Choice c = plan(w, ParallelSettings.fixed(2, 1, 1), devices);
    Plan balanced = plan(w, ParallelSettings.fixed(2, 1, 1), devices(2, GIB)).plan();
    assertTrue(c.plan().endLayer(0) < balanced.endLayer(0), c.plan() + " vs " + balanced);
  }

  @Test
  void aSlowDeviceGetsFewerLayers() {
    List<Device> devices =
        List.of(new Device("cpu:0", "n1", GIB, 2), new Device("cpu:1", "n1", GIB, 8));
    Plan p = plan(work(EIGHT, 128, 4, 16), ParallelSettings.fixed(2, 1, 1), devices).plan();
    assertTrue(p.endLayer(0) < 4, p.toString());
  }

  @Test
  void tensorShardsOfAStageStayOnOneNode() {
    List<Device> devices = new ArrayList<>();
    for (String node : List.of("a", "b")) {
      for (int i = 0; i < 3; i++) devices.add(new Device("cpu:" + i, node, GIB, 8));
    }
    Choice c = plan(work(EIGHT, 64, 2, 16), ParallelSettings.fixed(2, 2, 1), devices);
    assertEquals(
        List.of(devices.get(0), devices.get(1), devices.get(3), devices.get(4)), c.devices());
    for (int s = 0; s < 2; s++) {
      Plan p = c.plan();
      assertEquals(
          c.devices().get(p.rankOf(s, 0, 0)).node(), c.devices().get(p.rankOf(s, 1, 0)).node());
    }
  }

  @Test
  void oneDeviceRunsEverything() {
    Choice c = plan(work(EIGHT, 64, 2, 16), ParallelSettings.AUTO, devices(1, GIB));
    assertEquals(Plan.single(8), c.plan());
    assertTrue(c.explanation().contains("no plan on more devices fits"), c.explanation());
  }

  @Test
  void moreDevicesDoNotPayWhenCommunicationDominates() {
    // One microbatch per step: no data parallelism, a pipeline cannot overlap, and tensor shards on
    // different nodes pay more in all-reduces than the tiny model's compute saves.
    Workload w = work(EIGHT, 16, 1, 1);
    List<Device> devices = new ArrayList<>();
    for (int i = 0; i < 4; i++) devices.add(new Device("cpu:0", "node" + i, GIB, 8));
    Choice c = plan(w, ParallelSettings.AUTO, devices);
    assertEquals(Plan.single(8), c.plan());
    assertEquals(List.of(devices.get(0)), c.devices());
    assertTrue(
        c.explanation().contains("more devices would not pay: the next best is "), c.explanation());
  }

  @Test
  void aGlobalBatchThatMicrobatchesDoNotDivideIsRefused() {
    Workload w = work(EIGHT, 16, 4, 10);
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class, () -> plan(w, ParallelSettings.AUTO, devices(2, GIB)));
    assertEquals("batch.global 10 is not a multiple of batch.micro 4", e.getMessage());
  }

  @Test
  void theExplanationNamesStagesDevicesAndTheBubble() {
    Choice c = plan(work(EIGHT, 128, 4, 16), ParallelSettings.fixed(2, 1, 1), devices(3, GIB));
    String x = c.explanation();
    assertTrue(x.startsWith("plan 2×1×1 (pp×tp×dp, fixed by the job file) on 2 of 3 devices"), x);
    assertTrue(x.contains("stage 0: layers [0,"), x);
    assertTrue(x.contains("+ embedding on cpu:0@n1: est. "), x);
    assertTrue(x.contains("+ norm + head on cpu:1@n1: est. "), x);
    assertTrue(x.contains("pipeline bubble (p-1)/(m+p-1) = 20%"), x);
  }

  @Test
  void planningIsPureArithmeticAndQuick() {
    ModelConfig big = model(80, 128000, 8192, 64, 8, 28672, false);
    long start = System.nanoTime();
    Choice c = plan(work(big, 512, 1, 64), ParallelSettings.AUTO, devices(32, 64 * GIB));
    assertTrue(System.nanoTime() - start < 5_000_000_000L, "planning took too long");
    assertContiguous(c.plan(), 80);
  }

  @ParameterizedTest(name = "{0} {1} warmup {2}")
  @CsvSource({
    "fp32, none, 0, 4, 4.0",
    "bf16, none, 0, 2, 2.0",
    "bf16, none, 100, 4, 4.0",
    "fp16, int8, 0, 2, 1.0",
    "bf16, int4, 0, 2, 0.5625",
    "bf16, nf4, 0, 2, 0.5625"
  })
  void workloadFromTheJob(String mode, String quant, int warmup, int dtype, double linear)
      throws Exception {
    JobConfig job =
        JobConfig.parse(
            "model = m, data.train = t, output = o\n"
                + "batch { global = 32, micro = 2, seq-len = 256 }\n"
                + "lora { r = 4, targets = [q_proj, down_proj] }\n"
                + "precision { mode = "
                + mode
                + ", fp32-warmup-steps = "
                + warmup
                + " }\n"
                + "quantization.base = "
                + quant,
            Path.of("job.conf"));
    Workload w = Workload.of(job, EIGHT);
    assertEquals(
        new Workload(
            EIGHT, 256, 2, 32, 4, List.of(LoraTarget.Q_PROJ, LoraTarget.DOWN_PROJ), linear, dtype),
        w);
  }

  @Test
  void quantizedWeightsNeedLessMemory() {
    Workload fp32 = SMALL_BATCH;
    Workload int8 =
        new Workload(EIGHT, 16, 1, 8, 8, List.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ), 1, 4);
    assertTrue(wholeModelBytes(int8) < wholeModelBytes(fp32));
    PlanCost.Evaluation e = PlanCost.evaluate(fp32, 1, 1, 1, devices(1, GIB));
    assertNotNull(e.plan);
  }
}
