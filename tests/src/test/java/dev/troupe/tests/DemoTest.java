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
 * it could not do before. Fine-tuned in fp32, in bf16 and fp16 (after an FP32 warm-up), and in bf16
 * over the base held in INT8 ({@code troupe demo --precision int8}), 300 steps as the demo runs:
 * each gets at least 95% of the 256 held-out prompts right and ends with an eval loss below 0.05
 * (about 8.0 before), and INT8's exact match is within 1.2 points of bf16's (the bar).
 *
 * <p>The bounds hold with room under every fine-tuning seed tried (2-7, an experiment on 1,024
 * prompts, not a test): bf16 and INT8 at 99.9-100%, eval loss 0.0090-0.0104. A run that stalls, as
 * the demo's did under some seeds before its base had a sharper output head (see {@link
 * dev.troupe.pipeline.demo.Demo}), fails them: at 60 steps, midway, losses are 0.03-0.23 and exact
 * match 79-99%.
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
        "demo, 300 steps, %d prompts: exact match before %.1f%%, after fp32 %.1f%% / bf16 %.1f%%"
            + " / fp16 %.1f%% / int8 %.1f%%; eval loss before %.4f, after fp32 %.4f, bf16 %.4f,"
            + " fp16 %.4f, int8 %.4f%n",
        fp32.examples(),
        100 * fp32.accuracyBefore(),
        100 * fp32.accuracyAfter(),
        100 * bf16.accuracyAfter(),
        100 * fp16.accuracyAfter(),
        100 * int8.accuracyAfter(),
        fp32.lossBefore(),
        fp32.lossAfter(),
        bf16.lossAfter(),
        fp16.lossAfter(),
        int8.lossAfter());
    assertEquals(0.0, fp32.accuracyBefore(), "the base cannot do the task before fine-tuning");
    assertEquals(0.0, int8.accuracyBefore(), "nor can its INT8 form");
    for (Demo.Result r : new Demo.Result[] {fp32, bf16, fp16, int8}) {
      assertTrue(r.accuracyAfter() >= 0.95, "fine-tuning taught the task: " + r.accuracyAfter());
      assertTrue(r.lossAfter() < 0.05, "the eval loss came down: " + r.lossAfter());
    }
    assertTrue(
        Math.abs(int8.accuracyAfter() - bf16.accuracyAfter()) <= 0.012,
        "INT8 within 1.2 points of bf16: "
            + int8.accuracyAfter()
            + " against "
            + bf16.accuracyAfter());
  }
}
