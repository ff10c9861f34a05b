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
 * A job over two devices (pp=2) loses a node that holds one of its stages (kill -9, or frozen with
 * SIGSTOP past the failure detector's limit, so that the split-brain resolver downs it): the driver
 * sees the device go, the coordinator plans again on the devices left (the spare worker takes the
 * lost stage), and the new run restores the trainable state of the last committed step from the
 * copies every stage keeps on its own device and on a buddy on another node: there is no checkpoint
 * to go back to (checkpoint.every is beyond the job's length), and no step is computed twice. The
 * job completes, every step is in metrics.jsonl once, the replan event says where the state came
 * from, and losses and adapter match the same job trained in one go on one device (fp32, no
 * shuffling, dropout 0).
 */
class DistributedWorkerLossTest {
  @TempDir Path dir;

  private JsonNode status(Path config) throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int rc =
        Main.run(
            new String[] {"jobs", "--json", "--config", config.toString()},
            new PrintStream(out, true, StandardCharsets.UTF_8),
            new PrintStream(err, true, StandardCharsets.UTF_8));
    assertEquals(0, rc, "jobs: " + out + " " + err);
    String line = out.toString(StandardCharsets.UTF_8).strip().lines().findFirst().orElseThrow();
    return new ObjectMapper().readTree(line);
  }

  private Path job(String name, String parallel) throws Exception {
    return TrainingJobs.exactJob(
        dir, name, "steps = 60\ncheckpoint { every = 1000 }\nparallel " + parallel);
  }

  /**
   * @param how {@code kill}: kill -9 of the worker; {@code freeze}: SIGSTOP, so that it stops
   *     answering heartbeats but keeps its connections, until the split-brain resolver downs it;
   *     SIGCONT at the end, after which it finds itself downed and exits; {@code leave}: SIGTERM, a
   *     normal leave: the node drains itself (the run moves off it at the next step boundary) and
   *     then leaves the cluster
   */
  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"kill", "freeze", "leave"})
  void aJobOverTwoDevicesSurvivesTheLossOfOneOfThem(String how) throws Exception {
    ParallelPlansTest.writeModelAndData(dir);
    Path job = job("job", "{ pp = 2 }");
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
      List<Integer> ports = List.of(Nodes.freePort(), Nodes.freePort(), Nodes.freePort());
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
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(240);
      // progress from the job's metrics.jsonl (written on this machine by the coordinator's node):
      // polling with client commands would start an actor system for each look
      Path metrics = dir.resolve("job/metrics.jsonl");
      while (TrainingJobs.lastStep(metrics) < 12) {
        if (System.nanoTime() > deadline) fail("the job never reached step 12: " + status(conf));
        Thread.sleep(50);
      }
      JsonNode s = status(conf);
      String used = s.path("device").asText();
      assertTrue(s.path("plan").asText().startsWith("pp=2"), s.toString());
      int victim = -1;
      for (int i = 0; i < 3; i++) if (used.contains(":" + ports.get(i) + "/")) victim = i;
      assertTrue(victim >= 0, "a worker of the plan: " + used);
      Process lost = workers.get(victim).process();
      switch (how) {
        case "kill" -> lost.destroyForcibly();
        case "freeze" -> Nodes.signal(lost, "STOP");
        // SIGTERM: the node drains itself, then leaves (Process.destroy would send it too, but
        // also close our end of its stdout)
        default -> Nodes.signal(lost, "TERM");
      }
      long killed = System.nanoTime();
      stepAtKill = TrainingJobs.lastStep(metrics);
      if (how.equals("leave")) {
        // the run goes on until the node's drain reaches the coordinator, then moves at a step
        // boundary: wait for a plan without the node
        s = status(conf);
        while (s.path("device").asText().isEmpty()
            || s.path("device").asText().contains(":" + ports.get(victim) + "/")) {
          if (System.nanoTime() > deadline) fail("the run never moved off the leaving node: " + s);
          Thread.sleep(200);
          s = status(conf);
        }
        stepAtKill = s.path("step").asLong();
      }
      // the old run may still write the step that was being journaled when the device went; the
      // new plan's first step is followed by its replan line
      while (!Files.readString(metrics).contains("\"replan\"")) {
        if (System.nanoTime() > deadline) fail("the job never got past step " + stepAtKill);
        Thread.sleep(50);
      }
      recovery = (System.nanoTime() - killed) / 1e9;
      s = status(conf);
      assertTrue(!s.path("device").asText().contains(":" + ports.get(victim) + "/"), s.toString());
      while (!s.path("state").asText().equals("COMPLETED")) {
        if (System.nanoTime() > deadline) fail("the job never completed: " + s);
        Thread.sleep(1000);
        s = status(conf);
      }
      System.out.println("status: last recovery: " + s.path("last_recovery").asText());
      assertTrue(
          s.path("last_recovery")
              .asText()
              .contains(how.equals("leave") ? "drained" : "left the cluster"),
          s.toString());
      if (how.equals("leave")) {
        assertTrue(lost.waitFor(90, TimeUnit.SECONDS), "the leaving node exits");
        assertEquals(143, lost.exitValue(), "a JVM ended by SIGTERM after its shutdown hooks");
        Nodes.Node left = workers.get(victim);
        String line = "troupe node: leaving: the run that used it ended at a step boundary";
        for (int i = 0; i < 50 && !left.printed(line); i++) Thread.sleep(100); // the reader's lag
        assertTrue(left.printed(line), left.report());
      }
      if (how.equals("freeze")) {
        Nodes.signal(lost, "CONT");
        // downed while frozen: once it runs again it learns so and its node shuts down
        assertTrue(lost.waitFor(90, TimeUnit.SECONDS), "the frozen node exits after SIGCONT");
        System.out.println("the frozen node exited " + lost.exitValue() + " after SIGCONT");
        // the other nodes remove the downed member once their gossip converges (asynchronous: it
        // may still be listed as down for a moment after the node exited)
        JsonNode after = status(conf);
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (after.path("members").asInt() != 3 && System.nanoTime() < until) {
          Thread.sleep(500);
          after = status(conf);
        }
        assertEquals(
            3, after.path("members").asInt(), "the coordinator node and two workers: " + after);
      }
    } catch (Throwable t) {
      for (Nodes.Node n : nodes) {
        System.out.println("node " + n + ", stderr:\n" + Files.readString(n.stderr()));
      }
      throw t;
    } finally {
      for (Nodes.Node n : nodes.reversed()) n.stop();
    }
    System.out.printf(
        "pp=2 worker %s after step %d; a step past it committed by the new plan %.1f s later"
            + " (failure detector: acceptable-heartbeat-pause 2 s, split-brain resolver"
            + " stable-after 3 s)%n",
        switch (how) {
          case "kill" -> "killed (kill -9)";
          case "freeze" -> "frozen (SIGSTOP)";
          default -> "stopped (SIGTERM: drained, then left)";
        },
        stepAtKill,
        recovery);

    JsonNode replan = null;
    for (String line : Files.readAllLines(dir.resolve("job/metrics.jsonl"))) {
      if (line.contains("\"replan\"")) replan = new ObjectMapper().readTree(line);
    }
    assertTrue(replan != null, "a replan event in metrics.jsonl");
    System.out.println("replan event: " + replan);
    assertEquals("copies", replan.path("restored_from").asText(), replan.toString());
    // from the last step committed before the kill to the coordinator learning of the loss
    // (0 for a drain, which is a re-plan on purpose)
    assertEquals(how.equals("leave"), replan.path("detect_ms").asLong() == 0, replan.toString());
    assertEquals(
        replan.path("committed_step").asLong(),
        replan.path("resumed_at_step").asLong(),
        "no committed step is computed again: " + replan);
    TrainingJobs.matchesOneDevice(dir.resolve("job"), job("direct", "{ pp = 1 }"), 60);
  }
}
