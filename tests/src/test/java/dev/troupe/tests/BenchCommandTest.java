package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.cli.Main;
import dev.troupe.pipeline.engine.Natives;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code troupe bench} end to end on the tiny preset: each mode in its own JVM, one JSON line per
 * configuration with the fields the benchmark promises; bad options are usage errors. (Speed is
 * reported by the command, never asserted.)
 */
class BenchCommandTest {
  @TempDir Path dir;

  private static String[] run(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int status =
        Main.run(
            args,
            new PrintStream(out, true, StandardCharsets.UTF_8),
            new PrintStream(err, true, StandardCharsets.UTF_8));
    return new String[] {
      String.valueOf(status),
      out.toString(StandardCharsets.UTF_8),
      err.toString(StandardCharsets.UTF_8)
    };
  }

  @Test
  void printsOneJsonLinePerConfiguration() throws Exception {
    String[] r =
        run(
            "bench",
            "--preset",
            "tiny",
            "--models-dir",
            dir.toString(),
            "--modes",
            "full-fp32,lora-int8",
            "--seq",
            "32",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--peer",
            "none",
            "--json");
    assertEquals("0", r[0], r[2]);
    List<JsonNode> lines = new ArrayList<>();
    for (String line : r[1].split("\n")) {
      if (line.startsWith("{")) lines.add(new ObjectMapper().readTree(line));
    }
    assertEquals(2, lines.size(), r[1]);
    assertEquals("full-fp32", lines.get(0).get("mode").asText());
    assertEquals("lora-int8", lines.get(1).get("mode").asText());
    for (JsonNode l : lines) {
      assertEquals("troupe", l.get("impl").asText());
      assertTrue(l.get("tokens_per_s").asDouble() > 0, l.toString());
      assertTrue(l.get("peak_rss_mib").asDouble() > 0, l.toString());
      assertTrue(Double.isFinite(l.get("eval_loss").asDouble()), l.toString());
      assertEquals(2, l.get("step_s").size());
      // libgomp's wait: the bench's own where its environment sets one, else bin/troupe's
      String policy = System.getenv("OMP_WAIT_POLICY");
      String spins = System.getenv("GOMP_SPINCOUNT");
      String expectedWait =
          policy == null || policy.isEmpty()
              ? "ACTIVE/" + (spins == null || spins.isEmpty() ? "30000" : spins)
              : policy + "/" + (spins == null || spins.isEmpty() ? "-" : spins);
      assertEquals(expectedWait, l.get("omp_wait").asText(), l.toString());
      String products = System.getenv("TROUPE_FP32_PRODUCTS");
      assertEquals(
          products == null ? "onednn" : products.trim().toLowerCase(java.util.Locale.ROOT),
          l.get("fp32_products").asText(),
          l.toString());
      // the bench gives every run the short OpenBLAS spin where the environment sets none
      if (System.getenv("OPENBLAS_THREAD_TIMEOUT") == null
          && System.getenv("GOTO_THREAD_TIMEOUT") == null) {
        assertEquals(
            Natives.OPENBLAS_THREAD_TIMEOUT,
            l.get("openblas_thread_timeout").asInt(),
            l.toString());
      }
    }
    // every weight is trained in full fine-tuning; LoRA r=16 on q and v of the tiny model only
    assertTrue(
        lines.get(0).get("params_trainable").asLong()
            > 10 * lines.get(1).get("params_trainable").asLong());
  }

  @Test
  void unknownModeIsAUsageError() {
    String[] r = run("bench", "--modes", "lora-int3", "--peer", "none");
    assertEquals("2", r[0]);
    assertTrue(r[2].contains("unknown mode 'lora-int3'"), r[2]);
  }
}
