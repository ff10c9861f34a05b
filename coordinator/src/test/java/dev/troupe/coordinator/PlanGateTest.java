package dev.troupe.coordinator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.dist.Planner;
import dev.troupe.pipeline.model.ModelConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The gate before planning: waits said in words, the elastic limits, and refusals. */
class PlanGateTest {
  @TempDir static Path dir;

  @BeforeAll
  static void model() throws Exception {
    Files.createDirectories(dir.resolve("model"));
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
            false,
            false,
            false,
            0,
            128,
            List.of(2L),
            1);
    Files.writeString(dir.resolve("model/config.json"), c.toJson().toString());
  }

  private static String job(String extra) {
    return """
    model = "%s"
    data { train = "%s", format = tokens }
    batch { global = 8, micro = 2, seq-len = 24 }
    output = "%s"
    %s
    """
        .formatted(dir.resolve("model"), dir.resolve("train.jsonl"), dir.resolve("out"), extra);
  }

  /** {@code n} devices named d0..., one per node, 8 GiB and 2 threads each. */
  private static List<String> devices(int n) {
    List<String> out = new ArrayList<>();
    for (int i = 0; i < n; i++) out.add("d" + i);
    return out;
  }

  private static List<Planner.Device> offered(List<String> ids) {
    List<Planner.Device> out = new ArrayList<>();
    for (String id : ids) out.add(new Planner.Device(id, "node-" + id, 8L << 30, 2));
    return out;
  }

  private static PlanGate.Outcome<String> gate(String extra, int devices) throws Exception {
    return PlanGate.plan(job(extra), "job.conf", devices(devices), PlanGateTest::offered);
  }

  @Test
  void tooFewDevicesForTheElasticMinimumWait() throws Exception {
    var w = assertInstanceOf(PlanGate.Wait.class, gate("elastic.min-devices = 3", 2));
    assertEquals("waiting for devices: the job's elastic.min-devices is 3, 2 usable", w.why());
  }

  @Test
  void aFixedPlanWaitsForItsDevicesCountedAfterTheElasticMaximum() throws Exception {
    var w =
        assertInstanceOf(
            PlanGate.Wait.class, gate("parallel { pp = 2, dp = 2 }\nelastic.max-devices = 3", 5));
    assertTrue(w.why().endsWith("(4 devices), 3 registered"), w.why());
  }

  @Test
  void aPlanIsChosenAmongTheDevicesTheElasticMaximumLeaves() throws Exception {
    var p =
        assertInstanceOf(
            PlanGate.Planned.class, gate("parallel { pp = 2 }\nelastic.max-devices = 2", 4));
    assertEquals(List.of("d0", "d1"), p.usable());
    assertEquals(2, p.choice().plan().pp());
    assertEquals(4, p.model().numLayers());
  }

  @Test
  void aMalformedJobOrAMissingModelIsRefused() {
    var bad =
        assertThrows(
            dev.troupe.pipeline.job.JobConfigException.class, () -> gate("batch.global = -1", 1));
    assertTrue(bad.getMessage().contains("batch.global"), bad.getMessage());
    assertThrows(
        java.io.IOException.class,
        () ->
            PlanGate.plan(
                job("model = \"" + dir.resolve("nothing") + "\""),
                "job.conf",
                devices(1),
                PlanGateTest::offered));
  }
}
