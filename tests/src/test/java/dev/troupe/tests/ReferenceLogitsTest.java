package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.cli.Main;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.SafetensorsWriter;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code troupe score} in fp32 against an independent PyTorch implementation of the Hugging Face
 * LLaMA forward, within 1e-4 absolute and 1e-4 relative to the largest logit.
 *
 * <p>Where python3-torch is installed (CI installs it) the reference runs live. Its results are
 * also committed under {@code src/test/resources/reference/}, tagged with a hash of the model files
 * they belong to, so that a machine with only a JDK and Maven still checks the numerics; {@code
 * TROUPE_WRITE_REFERENCES=1} rewrites them from a live run.
 */
class ReferenceLogitsTest {
  static final float TOLERANCE = 1e-4f;
  static final Path COMMITTED = Path.of("src/test/resources/reference");
  @TempDir static Path root;

  @TestFactory
  Stream<DynamicTest> scoreMatchesTheHuggingFaceReference() {
    return ReferenceCase.all().stream().map(c -> DynamicTest.dynamicTest(c.name(), () -> check(c)));
  }

  void check(ReferenceCase c) throws Exception {
    c.write(root);
    String fingerprint = c.fingerprint(root);
    Path ours = root.resolve(c.name()).resolve("troupe.safetensors");
    score(c, ours, "fp32");
    Logits got = Logits.read(ours);
    assertEquals(List.of(2L, 8L, 300L), java.util.Arrays.stream(got.shape()).boxed().toList());

    List<String> compared = new ArrayList<>();
    Path committed = COMMITTED.resolve(c.name() + ".safetensors");
    if (PythonReference.available()) {
      Path live =
          PythonReference.score(
              c.modelDir(root),
              c.adapter() ? c.adapterDir(root) : null,
              ReferenceCase.IDS,
              "fp32",
              root.resolve(c.name()).resolve("reference.safetensors"));
      Logits ref = Logits.read(live);
      assertWithin(c.name() + " (live reference)", ref, got);
      compared.add("live");
      if ("1".equals(System.getenv("TROUPE_WRITE_REFERENCES")))
        writeCommitted(committed, ref, fingerprint);
    }
    if (Files.exists(committed)) {
      Logits ref = Logits.read(committed);
      assertEquals(
          ref.metadata().get("fingerprint"),
          fingerprint,
          c.name()
              + ": the committed reference was computed for other model bytes; regenerate it with"
              + " python3-torch installed and TROUPE_WRITE_REFERENCES=1");
      assertWithin(c.name() + " (committed reference)", ref, got);
      compared.add("committed");
    }
    assertTrue(
        !compared.isEmpty(),
        c.name()
            + ": no reference to compare with: install python3-torch "
            + "(apt-get install python3-torch) or restore "
            + committed);
  }

  static void score(ReferenceCase c, Path out, String dtype) {
    List<String> args =
        new ArrayList<>(
            List.of(
                "score",
                "--model",
                c.modelDir(root).toString(),
                "--ids",
                ReferenceCase.IDS,
                "--out",
                out.toString(),
                "--dtype",
                dtype));
    if (c.adapter()) args.addAll(List.of("--adapter", c.adapterDir(root).toString()));
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int status =
        Main.run(
            args.toArray(String[]::new),
            new PrintStream(new ByteArrayOutputStream()),
            new PrintStream(err));
    assertEquals(0, status, "troupe score failed: " + err);
  }

  static void assertWithin(String what, Logits ref, Logits got) {
    float diff = ref.maxAbsDiff(got);
    float rel = diff / ref.maxAbs();
    System.out.printf(
        "%s: max |difference| %.3g, relative to the largest logit (%.3g) %.3g%n",
        what, diff, ref.maxAbs(), rel);
    assertTrue(
        diff <= TOLERANCE && rel <= TOLERANCE,
        what
            + ": max |difference| "
            + diff
            + " (relative to the largest logit "
            + rel
            + ") exceeds "
            + TOLERANCE);
  }

  static void writeCommitted(Path file, Logits ref, String fingerprint) throws Exception {
    Files.createDirectories(file.getParent());
    ByteBuffer b = ByteBuffer.allocate(ref.values().length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float v : ref.values()) b.putFloat(v);
    b.flip();
    SafetensorsWriter.write(
        file,
        new TreeMap<>(Map.of("logits", new TensorData(DType.F32, ref.shape(), b))),
        Map.of(
            "fingerprint",
            fingerprint,
            "source",
            "src/test/python/hf_llama_reference.py, python3-torch"));
  }
}
