package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.cli.Main;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A job on one device (the 1 × 1 × 1 plan) on a cluster of a coordinator node without devices and
 * two workers; the job keeps a copy of its state after every step on its own device and on the
 * other worker (its buddy), and has no checkpoint before its end. One worker is killed (SIGKILL)
 * mid-run:
 *
 * <ul>
 *   <li>{@code trainer}: the worker that trains the job. The split-brain resolver downs it, the
 *       coordinator sends the job to the other worker, which restores the last committed step from
 *       the copy it keeps;
 *   <li>{@code buddy}: the worker that keeps the copies. The run waits for the buddy's
 *       acknowledgement of the step in flight until the coordinator tells it that no device on
 *       another node is left to keep copies, then goes on without a re-plan, with the copy on its
 *       own device.
 * </ul>
 *
 * Either way no committed step is computed again, the job completes with every step once in
 * metrics.jsonl, and losses and adapter equal those of the same job trained without interruption
 * (shuffled data and dropout included); where the run moved, the {@code replan} line says that the
 * state came from the copies.
 */
class WorkerLossTest {
  @TempDir Path dir;

  private JsonNode status(Path config) throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int rc =
        Main.run(
            new String[] {"jobs", "--json", "--config", config.toString()},
            new PrintStream(out, true, StandardCharsets.UTF_8),
            new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
    assertEquals(0, rc, "jobs: " + out);
    String line = out.toString(StandardCharsets.UTF_8).strip().lines().findFirst().orElseThrow();
    return new ObjectMapper().readTree(line);
  }

  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"trainer", "buddy"})
  void aJobOnOneDeviceLosesNoCommittedStep(String victimRole) throws Exception {
    TrainingJobs.writeModelAndData(dir);
    String extra = "steps = 60\ncheckpoint { every = 1000 }";
    Path job = TrainingJobs.job(dir, "job", extra);
    int p1 = Nodes.freePort();
    String contact = "127.0.0.1:" + p1;
    Path conf = dir.resolve("cluster.conf");
    Files.writeString(
        conf,
        """
        troupe.client { contacts = ["%s"], timeout = 30s }
        pekko.cluster.split-brain-resolver.stable-after = 3s
        pekko.cluster.failure-detector.acceptable-heartbeat-pause = 2s
        """
            .formatted(contact));
    List<Nodes.Node> nodes = new ArrayList<>();
    long stepAtKill;
    double recovery;
    try {
      Nodes.Node coordinator = Nodes.coordinatorOnly(dir, p1, conf);
      nodes.add(coordinator);
      List<Integer> ports = List.of(Nodes.freePort(), Nodes.freePort());
      List<Nodes.Node> workers = new ArrayList<>();
      for (int port : ports) {
        Nodes.Node w = Nodes.worker(dir, "w" + port, port, contact, conf);
        nodes.add(w);
        workers.add(w);
        Nodes.await(coordinator, "troupe node: member up pekko://troupe@127.0.0.1:" + port);
      }
      assertEquals(
          0,
          Main.run(
              new String[] {"submit", job.toString(), "--config", conf.toString()},
              new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
              System.err));

      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
      Path metrics = dir.resolve("job/metrics.jsonl");
      while (TrainingJobs.lastStep(metrics) < 12) {
        if (System.nanoTime() > deadline) fail("the job never reached step 12: " + status(conf));
        Thread.sleep(50);
      }
      JsonNode s = status(conf);
      assertTrue(s.path("plan").asText().startsWith("pp=1 tp=1 dp=1"), s.toString());
      String device = s.get("device").asText();
      int trainer = device.contains(":" + ports.get(0) + "/") ? 0 : 1;
      assertTrue(device.contains(":" + ports.get(trainer) + "/"), device);
      int victim = victimRole.equals("trainer") ? trainer : 1 - trainer;
      workers.get(victim).process().destroyForcibly();
      long killed = System.nanoTime();
      stepAtKill = TrainingJobs.lastStep(metrics);

      while (TrainingJobs.lastStep(metrics) <= stepAtKill + 1) {
        if (System.nanoTime() > deadline) fail("the job never got past step " + stepAtKill);
        Thread.sleep(50);
      }
      recovery = (System.nanoTime() - killed) / 1e9;
      while (!s.get("state").asText().equals("COMPLETED")) {
        if (System.nanoTime() > deadline) fail("the job never completed: " + s);
        Thread.sleep(500);
        s = status(conf);
      }
      assertTrue(
          s.path("device").asText().isEmpty()
              || s.path("device").asText().contains(":" + ports.get(1 - victim) + "/"),
          s.toString());
      System.out.println("status: last recovery: " + s.path("last_recovery").asText());
      assertEquals(60, s.get("step").asLong());
    } catch (Throwable t) {
      for (Nodes.Node n : nodes) {
        System.out.println("node " + n + ", stderr:\n" + Files.readString(n.stderr()));
      }
      throw t;
    } finally {
      for (Nodes.Node n : nodes.reversed()) n.stop();
    }
    System.out.printf(
        "the %s of a job on one device killed after step %d; the job was past step %d %.1f s later"
            + " (failure detector: acceptable-heartbeat-pause 2 s, split-brain resolver"
            + " stable-after 3 s)%n",
        victimRole, stepAtKill, stepAtKill + 1, recovery);

    JsonNode replan = null;
    for (String line : Files.readAllLines(dir.resolve("job/metrics.jsonl"))) {
      if (line.contains("\"replan\"")) replan = new ObjectMapper().readTree(line);
    }
    if (victimRole.equals("buddy")) {
      assertEquals(null, replan, "the run went on where it was");
    } else {
      assertTrue(
          replan != null,
          "a replan event in metrics.jsonl; train.log:\n"
              + Files.readString(dir.resolve("job/train.log")));
      System.out.println("replan event: " + replan);
      assertEquals("copies", replan.path("restored_from").asText(), replan.toString());
      assertTrue(replan.path("new_plan").asText().startsWith("pp=1 tp=1 dp=1"), replan.toString());
      assertTrue(replan.path("cause").asText().contains("left the cluster"), replan.toString());
      // the committed step, or the one before where the device died between the journal's write
      // of a step and its own write of that step's line: that step is computed again (its commit
      // is then only acknowledged), so every step is still written once
      long c = replan.path("committed_step").asLong();
      long r = replan.path("resumed_at_step").asLong();
      assertTrue(r == c || r == c - 1, "at most the unwritten step is computed again: " + replan);
    }
    TrainingJobs.matchesOneDevice(dir.resolve("job"), TrainingJobs.job(dir, "direct", extra), 60);
  }
}
