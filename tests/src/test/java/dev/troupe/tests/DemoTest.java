package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.demo.Demo;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README's main job: the base model learns copy and reverse, then LoRA teaches it upper, which
 * it could not do before. Fine-tuned in bf16 and fp16 (after an FP32 warm-up), and in bf16 over the
 * base held in INT8 ({@code troupe demo --precision int8}), the eval loss is at most 2% above
 * fp32's, and each gets at least half of the held-out prompts right (300 fine-tuning steps, as the
 * demo runs).
 *
 * <p>The loss bound is one-sided: reduced precision must not make fine-tuning worse, and 300 steps
 * of a tiny model cannot tell apart smaller differences in either direction. With the fine-tuning
 * seed changed from 2 to 3 and 4 (an experiment, not a test), fp32's own eval loss moved by 6.6%
 * (3.249, 3.463, 3.376), while bf16 and fp16 ended 1.3% below to 0.7% above fp32's under each seed
 * (fp16 3.1% below with seed 3).
 */
class DemoTest {
  @TempDir Path dir;

  @Test
  void loraTeachesTheBaseANewTaskInEveryPrecision() throws Exception {
    Demo demo = new Demo(dir, new PrintStream(new ByteArrayOutputStream()), false);
    Demo.Result fp32 = demo.run("fp32", 300);
    Demo.Result bf16 = demo.run("bf16", 300);
    Demo.Result fp16 = demo.run("fp16", 300);
    Demo.Result int8 = demo.run("int8", 300);
    System.out.printf(
        "demo, 300 steps: exact match before %.1f%%, after fp32 %.1f%% / bf16 %.1f%% / fp16 %.1f%%"
            + " / int8 %.1f%%; eval loss fp32 %.4f, bf16 %.4f (%+.2f%%), fp16 %.4f (%+.2f%%),"
            + " int8 %.4f (%+.2f%%)%n",
        100 * fp32.accuracyBefore(),
        100 * fp32.accuracyAfter(),
        100 * bf16.accuracyAfter(),
        100 * fp16.accuracyAfter(),
        100 * int8.accuracyAfter(),
        fp32.lossAfter(),
        bf16.lossAfter(),
        100 * (bf16.lossAfter() / fp32.lossAfter() - 1),
        fp16.lossAfter(),
        100 * (fp16.lossAfter() / fp32.lossAfter() - 1),
        int8.lossAfter(),
        100 * (int8.lossAfter() / fp32.lossAfter() - 1));
    assertEquals(0.0, fp32.accuracyBefore(), "the base cannot do the task before fine-tuning");
    assertEquals(0.0, int8.accuracyBefore(), "nor can its INT8 form");
    for (Demo.Result r : new Demo.Result[] {fp32, bf16, fp16, int8}) {
      assertTrue(r.accuracyAfter() >= 0.5, "fine-tuning taught the task: " + r.accuracyAfter());
    }
    for (Demo.Result r : new Demo.Result[] {bf16, fp16, int8}) {
      assertTrue(
          r.lossAfter() <= 1.02 * fp32.lossAfter(),
          "reduced precision ended more than 2% above fp32's eval loss: "
              + r.lossAfter()
              + " against "
              + fp32.lossAfter());
    }
  }
}
