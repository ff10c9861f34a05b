package dev.troupe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every user mistake gives one clear line on stderr, a non-zero status and no stack trace. */
class CliErrorsTest {
  @TempDir static Path dir;
  static Path model;

  record Result(int status, String out, String err) {}

  static Result troupe(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int status =
        Main.run(
            args,
            new PrintStream(out, true, StandardCharsets.UTF_8),
            new PrintStream(err, true, StandardCharsets.UTF_8));
    return new Result(
        status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  @BeforeAll
  static void tinyModel() {
    model = dir.resolve("tiny");
    Result r = troupe("init-model", "--preset", "tiny", "--out", model.toString(), "--seed", "1");
    assertEquals(0, r.status(), r.err());
  }

  static void assertOneLineError(Result r, int status, String expected) {
    assertEquals(status, r.status(), r.err());
    assertEquals(1, r.err().lines().count(), "one line, no stack trace:\n" + r.err());
    assertTrue(r.err().startsWith("troupe: error: "), r.err());
    assertTrue(r.err().contains(expected), "expected '" + expected + "' in: " + r.err());
    assertFalse(r.err().contains("\tat "), r.err());
  }

  @Test
  void missingModelFolder() {
    assertOneLineError(
        troupe("score", "--model", dir.resolve("nope").toString(), "--ids", "1,2", "--out", "x"),
        1,
        "nope: model folder does not exist");
  }

  @Test
  void folderWithoutConfig() throws Exception {
    Path empty = Files.createDirectories(dir.resolve("empty"));
    assertOneLineError(
        troupe("generate", "--model", empty.toString(), "--prompt-ids", "1"),
        1,
        "no config.json (not a Hugging Face model folder)");
  }

  @Test
  void unsupportedArchitecture() throws Exception {
    Path gpt2 = Files.createDirectories(dir.resolve("gpt2"));
    Files.writeString(
        gpt2.resolve("config.json"), "{\"model_type\": \"gpt2\", \"vocab_size\": 10}");
    assertOneLineError(
        troupe("score", "--model", gpt2.toString(), "--ids", "1", "--out", "x"),
        1,
        "unsupported architecture model_type=\"gpt2\" (supported: llama, mistral, qwen2)");
  }

  @Test
  void adapterThatDoesNotFitTheModel() throws Exception {
    // q_proj takes 64 inputs; this adapter's A has 32 columns
    Path adapter = dir.resolve("bad-adapter");
    var tensors = new java.util.TreeMap<String, dev.troupe.pipeline.safetensors.TensorData>();
    tensors.put(
        dev.troupe.pipeline.lora.PeftAdapter.key(
            0, dev.troupe.pipeline.lora.LoraTarget.Q_PROJ, 'A'),
        dev.troupe.pipeline.safetensors.TensorData.ofFloats(new long[] {4, 32}, new float[128]));
    tensors.put(
        dev.troupe.pipeline.lora.PeftAdapter.key(
            0, dev.troupe.pipeline.lora.LoraTarget.Q_PROJ, 'B'),
        dev.troupe.pipeline.safetensors.TensorData.ofFloats(new long[] {64, 4}, new float[256]));
    dev.troupe.pipeline.lora.PeftAdapter.write(
        adapter,
        4,
        8,
        0,
        java.util.EnumSet.of(dev.troupe.pipeline.lora.LoraTarget.Q_PROJ),
        tensors,
        "tiny");
    assertOneLineError(
        troupe(
            "score",
            "--model",
            model.toString(),
            "--adapter",
            adapter.toString(),
            "--ids",
            "1,2",
            "--out",
            dir.resolve("x.safetensors").toString()),
        1,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has shape [4, 32] but the"
            + " configuration implies [4, 64]");
  }

  @Test
  void missingAdapterFolder() {
    assertOneLineError(
        troupe(
            "score",
            "--model",
            model.toString(),
            "--adapter",
            dir.resolve("none").toString(),
            "--ids",
            "1",
            "--out",
            "x"),
        1,
        "adapter folder does not exist");
  }

  @Test
  void badIds() {
    assertOneLineError(
        troupe("score", "--model", model.toString(), "--ids", "1,x", "--out", "x"),
        2,
        "--ids sequence 1: 'x' is not a token id");
    assertOneLineError(
        troupe("score", "--model", model.toString(), "--ids", "1,512", "--out", "x"),
        2,
        "token id 512 is outside the vocabulary [0, 512)");
    assertOneLineError(
        troupe("score", "--model", model.toString(), "--ids", "1,2;3", "--out", "x"),
        2,
        "sequences must have equal length");
    assertOneLineError(
        troupe("generate", "--model", model.toString(), "--prompt-ids", "-1"),
        2,
        "token id -1 is outside the vocabulary");
  }

  @Test
  void badCommandLines() {
    assertOneLineError(troupe("score", "--model", model.toString()), 2, "score: --ids is required");
    assertOneLineError(troupe("score", "--modle", "x"), 2, "score: unknown option --modle");
    assertOneLineError(
        troupe("generate", "--model", model.toString()),
        2,
        "give exactly one of --prompt TEXT and --prompt-ids");
    assertOneLineError(
        troupe("score", "--model", model.toString(), "--ids", "1", "--out", "x", "--dtype", "fp8"),
        2,
        "unknown dtype 'fp8'");
    assertOneLineError(
        troupe("init-model", "--preset", "huge", "--out", "x"), 2, "unknown preset 'huge'");
    assertOneLineError(
        troupe("init-model", "--preset", "tiny", "--out", model.toString(), "--seed", "2"),
        2,
        "already holds a different model");
    assertOneLineError(troupe("bogus"), 2, "unknown command 'bogus'");
  }

  @Test
  void initModelTwiceKeepsTheModel() throws Exception {
    byte[] before = Files.readAllBytes(model.resolve("model.safetensors"));
    Result r = troupe("init-model", "--preset", "tiny", "--out", model.toString(), "--seed", "1");
    assertEquals(0, r.status(), r.err());
    assertTrue(r.out().contains("already holds this tiny model (seed 1, F32 weights); keeping it"), r.out());
    assertTrue(java.util.Arrays.equals(before, Files.readAllBytes(model.resolve("model.safetensors"))));
  }

  @Test
  void stackTraceOnlyWhenAsked() {
    Result r =
        troupe(
            "score",
            "--model",
            dir.resolve("nope").toString(),
            "--ids",
            "1",
            "--out",
            "x",
            "--stacktrace");
    assertEquals(1, r.status());
    assertTrue(r.err().contains("\tat "), r.err());
  }

  @Test
  void scoreAndGenerateWork() throws Exception {
    Path out = dir.resolve("logits.safetensors");
    Result r =
        troupe(
            "score", "--model", model.toString(), "--ids", "1,5,9;3,4,5", "--out", out.toString());
    assertEquals(0, r.status(), r.err());
    assertEquals("wrote logits [2, 3, 512] (fp32) to " + out, r.out().strip());
    Result g =
        troupe(
            "generate",
            "--model",
            model.toString(),
            "--prompt-ids",
            "1,5,9",
            "--max-new-tokens",
            "5",
            "--json");
    assertEquals(0, g.status(), g.err());
    assertTrue(g.out().strip().matches("\\[\\d+(,\\d+){0,4}]"), g.out());
    Result t =
        troupe(
            "generate",
            "--model",
            model.toString(),
            "--prompt",
            "Once upon a time",
            "--max-new-tokens",
            "3");
    assertEquals(0, t.status(), t.err());
  }
}
