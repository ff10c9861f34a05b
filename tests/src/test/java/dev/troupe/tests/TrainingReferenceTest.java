package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.cli.Main;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.lora.PeftAdapter;
import dev.troupe.pipeline.model.ModelConfig;
import dev.troupe.pipeline.model.RandomInit;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Random;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code troupe train} against an independent PyTorch implementation of the same LoRA training
 * ({@code src/test/python/lora_train_reference.py}: from-scratch forward, torch.optim.AdamW,
 * clip_grad_norm_): fp32, no shuffling, dropout 0, {@code lora.init} set, the {@code tokens}
 * format, a constant learning rate, 20 steps of 8 sequences in microbatches of 4. Per-step losses
 * must agree within 1e-4 relative, and the two final adapters must give the same logits through
 * {@code troupe score --adapter}.
 */
class TrainingReferenceTest {
  static final int STEPS = 20;
  @TempDir Path dir;

  @Test
  void lossesAndAdapterMatchPyTorch() throws Exception {
    assumeTrue(PythonReference.available(), "python3-torch is not installed");
    ModelConfig c = ReferenceCase.config("llama", 2, false, false, false, 0);
    Path model = dir.resolve("model");
    new RandomInit(c).seed(21).std(0.1).write(model);
    Path init = dir.resolve("init-adapter");
    writeInitAdapter(c, init);
    Path data = dir.resolve("train.jsonl");
    writeData(data, c.vocabSize());

    Path job = dir.resolve("job.conf");
    Files.writeString(
        job,
        """
        model = "%s"
        data { train = "%s", format = tokens, shuffle = false }
        lora { r = 4, alpha = 8, dropout = 0.0, targets = [q_proj, v_proj], init = "%s" }
        optimizer { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weight-decay = 0.01, schedule = constant,
                    warmup-steps = 0, max-grad-norm = 1.0 }
        batch { global = 8, micro = 4, seq-len = 24 }
        steps = %d
        precision { mode = fp32, fp32-warmup-steps = 0 }
        checkpoint { every = 100, keep = 1 }
        output = "%s"
        seed = 5
        """
            .formatted(model, data, init, STEPS, dir.resolve("out")));
    assertEquals(0, troupe("train", job.toString()));
    List<JsonNode> ours = new ArrayList<>();
    for (String line : Files.readAllLines(dir.resolve("out/metrics.jsonl"))) {
      JsonNode n = new ObjectMapper().readTree(line);
      if (!n.has("event")) ours.add(n);
    }

    Path losses = dir.resolve("losses.json");
    Path theirAdapter = dir.resolve("reference-adapter");
    python(
        "lora_train_reference.py",
        "--model",
        model.toString(),
        "--adapter-init",
        init.toString(),
        "--data",
        data.toString(),
        "--steps",
        Integer.toString(STEPS),
        "--global-batch",
        "8",
        "--micro",
        "4",
        "--seq-len",
        "24",
        "--lr",
        "1e-3",
        "--betas",
        "0.9,0.999",
        "--eps",
        "1e-8",
        "--weight-decay",
        "0.01",
        "--max-grad-norm",
        "1.0",
        "--schedule",
        "constant",
        "--out-losses",
        losses.toString(),
        "--out-adapter",
        theirAdapter.toString());
    JsonNode theirs = new ObjectMapper().readTree(losses.toFile()).get("steps");

    assertEquals(STEPS, ours.size());
    double worst = 0;
    for (int i = 0; i < STEPS; i++) {
      assertEquals(
          theirs.get(i).get("tokens").asLong(),
          ours.get(i).get("tokens").asLong(),
          "tokens of step " + (i + 1));
      double a = ours.get(i).get("loss").asDouble();
      double b = theirs.get(i).get("loss").asDouble();
      worst = Math.max(worst, Math.abs(a - b) / Math.abs(b));
    }
    System.out.printf(
        "per-step loss, troupe vs PyTorch over %d steps: max relative difference %.3g (first %.5f,"
            + " last %.5f)%n",
        STEPS,
        worst,
        theirs.get(0).get("loss").asDouble(),
        theirs.get(STEPS - 1).get("loss").asDouble());
    assertTrue(worst <= 1e-4, "per-step losses differ by " + worst + " relative");
    // 20 examples, 8 per step: steps 1, 6, 11 and 16 see the same sequences
    assertTrue(
        ours.get(15).get("loss").asDouble() < ours.get(0).get("loss").asDouble(),
        "the loss on the same sequences goes down");

    String ids = "1,5,9,3,4,5,7,8;3,4,5,200,100,17,42,2";
    Logits withOurs = score(model, dir.resolve("out/adapter"), ids, "ours");
    Logits withTheirs = score(model, theirAdapter, ids, "theirs");
    Logits before = score(model, init, ids, "init");
    float diff = withOurs.maxAbsDiff(withTheirs);
    float moved = withTheirs.maxAbsDiff(before);
    System.out.printf(
        "logits with the trained adapters: max |troupe - PyTorch| %.3g (training moved them by"
            + " %.3g)%n",
        diff, moved);
    assertTrue(diff <= 1e-4 * withTheirs.maxAbs(), "adapters give logits that differ by " + diff);
    assertTrue(moved > 100 * diff, "training changed the logits by only " + moved);
  }

  static void writeInitAdapter(ModelConfig c, Path dir) throws Exception {
    Torch.init();
    torch.manual_seed(77);
    SortedMap<String, TensorData> t = new TreeMap<>();
    long h = c.hiddenSize();
    for (int layer = 0; layer < c.numLayers(); layer++) {
      for (LoraTarget target : List.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ)) {
        long out =
            target == LoraTarget.Q_PROJ
                ? (long) c.numHeads() * c.headDim()
                : (long) c.numKvHeads() * c.headDim();
        t.put(PeftAdapter.key(layer, target, 'A'), random(4, h));
        t.put(PeftAdapter.key(layer, target, 'B'), random(out, 4));
      }
    }
    PeftAdapter.write(dir, 4, 8, 0.0, EnumSet.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ), t, "tiny");
  }

  static TensorData random(long... shape) {
    try (Tensor x = torch.randn(shape);
        Tensor s = x.mul(Torch.scalar(0.05))) {
      return new TensorData(DType.F32, shape, Torch.toBytes(s));
    }
  }

  /**
   * 20 sequences of 6..30 tokens (some cut by seq-len 24), prompt tokens masked in half of them.
   */
  static void writeData(Path file, int vocab) throws Exception {
    Random r = new Random(13);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 20; i++) {
      int len = 6 + r.nextInt(25);
      List<String> ids = new ArrayList<>();
      List<String> labels = new ArrayList<>();
      for (int t = 0; t < len; t++) {
        int id = 3 + r.nextInt(vocab - 3);
        ids.add(Integer.toString(id));
        labels.add(i % 2 == 0 && t < len / 3 ? "-100" : Integer.toString(id));
      }
      sb.append("{\"input_ids\": [")
          .append(String.join(",", ids))
          .append("], \"labels\": [")
          .append(String.join(",", labels))
          .append("]}\n");
    }
    Files.writeString(file, sb.toString());
  }

  Logits score(Path model, Path adapter, String ids, String name) throws Exception {
    Path out = dir.resolve("logits-" + name + ".safetensors");
    assertEquals(
        0,
        troupe(
            "score",
            "--model",
            model.toString(),
            "--adapter",
            adapter.toString(),
            "--ids",
            ids,
            "--out",
            out.toString()));
    return Logits.read(out);
  }

  static int troupe(String... args) {
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int status = Main.run(args, new PrintStream(new ByteArrayOutputStream()), new PrintStream(err));
    if (status != 0) System.err.println(err);
    return status;
  }

  static void python(String script, String... args) throws Exception {
    List<String> cmd =
        new ArrayList<>(
            List.of(
                PythonReference.PYTHON.toString(),
                Path.of("src/test/python", script).toAbsolutePath().toString()));
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(600, TimeUnit.SECONDS), script + " did not finish");
    assertEquals(0, p.exitValue(), script + " failed: " + out);
  }
}
