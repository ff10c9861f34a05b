package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.troupe.cli.Main;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.model.RandomInit;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.StringJoiner;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * bf16 compute against the Hugging Face reference's own bf16 (weights and activations in bfloat16,
 * norms and softmax in float32), on untied random weights over 512 positions: Troupe's bf16 must
 * stay within bf16's tolerance of the reference's bf16, and pick fp32's greedy token as often as
 * the reference's bf16 does (within one point). On such weights the next-token distribution is
 * nearly flat, so neither reaches 99%: measured 497/512 for both.
 */
class ReducedPrecisionReferenceTest {
  @TempDir Path dir;

  @Test
  void bf16AgreesWithFp32AsOftenAsTheReferenceBf16() throws Exception {
    assumeTrue(PythonReference.available(), "python3-torch is not installed");
    ModelConfig c = ReferenceCase.config("llama", 2, false, false, false, 0);
    Path model = dir.resolve("model");
    new RandomInit(c).seed(5).std(0.1).write(model);
    Random random = new Random(3);
    StringJoiner seqs = new StringJoiner(";");
    for (int s = 0; s < 8; s++) {
      StringJoiner ids = new StringJoiner(",");
      for (int t = 0; t < 64; t++) ids.add(Integer.toString(random.nextInt(c.vocabSize())));
      seqs.add(ids.toString());
    }
    String ids = seqs.toString();
    Logits refFp32 =
        Logits.read(PythonReference.score(model, null, ids, "fp32", dir.resolve("r32")));
    Logits refBf16 =
        Logits.read(PythonReference.score(model, null, ids, "bf16", dir.resolve("r16")));
    Logits ours = score(model, ids, "bf16");

    int positions = 8 * 64;
    int refAgree = agree(refFp32, refBf16);
    int ourAgree = agree(refFp32, ours);
    float diff = ours.maxAbsDiff(refBf16);
    System.out.printf(
        "bf16 vs fp32 greedy agreement: troupe %d/%d, reference %d/%d; |troupe bf16 - reference"
            + " bf16| <= %.3g (largest logit %.3g)%n",
        ourAgree, positions, refAgree, positions, diff, refFp32.maxAbs());
    assertTrue(
        diff <= 0.03f * refFp32.maxAbs(), "bf16 differs from the reference's bf16 by " + diff);
    assertTrue(
        ourAgree >= refAgree - positions / 100,
        "troupe bf16 agrees with fp32 at "
            + ourAgree
            + " positions, the reference's bf16 at "
            + refAgree);
  }

  static Logits score(Path model, String ids, String dtype) throws Exception {
    Path out = model.resolveSibling("troupe-" + dtype + ".safetensors");
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int status =
        Main.run(
            List.of(
                    "score",
                    "--model",
                    model.toString(),
                    "--ids",
                    ids,
                    "--out",
                    out.toString(),
                    "--dtype",
                    dtype)
                .toArray(String[]::new),
            new PrintStream(new ByteArrayOutputStream()),
            new PrintStream(err));
    assertEquals(0, status, err.toString());
    return Logits.read(out);
  }

  static int agree(Logits a, Logits b) {
    int[] x = a.argmax();
    int[] y = b.argmax();
    int n = 0;
    for (int i = 0; i < x.length; i++) if (x[i] == y[i]) n++;
    return n;
  }
}
