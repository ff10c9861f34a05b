package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole cluster stops at once (kill -9 of every node) under a job over two devices (pp=2,
 * checkpoints every 10 steps), and is started again: the coordinator node on its old port and data
 * folder (its H2 journal), the workers afresh. The coordinator recovers the job from the journal;
 * no device holds a copy of its state any more, so the run goes back to the newest checkpoint, says
 * so in the replan event, and the job completes with every step in metrics.jsonl once and the
 * losses and adapter of the same job trained in one go on one device.
 */
class WholeClusterRestartTest {
  @TempDir Path dir;

  private Path job(String name, String parallel) throws Exception {
    return TrainingJobs.exactJob(
        dir, name, "steps = 60\ncheckpoint { every = 10 }\nparallel " + parallel);
  }

  private List<Nodes.Node> start(int p1, Path conf, String round) throws Exception {
    String contact = "127.0.0.1:" + p1;
    List<Nodes.Node> nodes = new ArrayList<>();
    Nodes.Node coordinator = Nodes.coordinatorOnly(dir, p1, conf);
    nodes.add(coordinator);
    for (int i = 0; i < 2; i++) {
      int port = Nodes.freePort();
      nodes.add(Nodes.worker(dir, "w" + i + round, port, contact, conf));
      Nodes.await(coordinator, "troupe node: member up pekko://troupe@127.0.0.1:" + port);
    }
    return nodes;
  }

  @Test
  void aStoppedClusterResumesTheJobFromItsLastCheckpoint() throws Exception {
    ParallelPlansTest.writeModelAndData(dir);
    Path job = job("job", "{ pp = 2 }");
    int p1 = Nodes.freePort();
    Path conf = dir.resolve("cluster.conf");
    Files.writeString(
        conf, "troupe.client { contacts = [\"127.0.0.1:%d\"], timeout = 30s }\n".formatted(p1));
    Path metrics = dir.resolve("job/metrics.jsonl");
    List<Nodes.Node> nodes = new ArrayList<>();
    long stepAtStop;
    try {
      nodes.addAll(start(p1, conf, "a"));
      assertEquals(0, Nodes.client(conf, "submit", job.toString()).status());
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(240);
      while (TrainingJobs.lastStep(metrics) < 25) {
        if (System.nanoTime() > deadline) fail("the job never reached step 25");
        Thread.sleep(50);
      }
      for (Nodes.Node n : nodes) n.process().destroyForcibly();
      for (Nodes.Node n : nodes) n.process().waitFor(30, TimeUnit.SECONDS);
      stepAtStop = TrainingJobs.lastStep(metrics);
      nodes.clear();

      nodes.addAll(start(p1, conf, "b"));
      JsonNode s = null;
      while (s == null || !s.path("state").asText().equals("COMPLETED")) {
        if (System.nanoTime() > deadline) fail("the job never completed after the restart: " + s);
        Thread.sleep(1000);
        Nodes.ClientRun r = Nodes.client(conf, "jobs", "--json");
        if (r.status() == 0) {
          s = new ObjectMapper().readTree(r.out().strip().lines().findFirst().orElseThrow());
        }
      }
    } catch (Throwable t) {
      for (Nodes.Node n : nodes) System.out.println("node " + n + ":\n" + n.report());
      throw t;
    } finally {
      for (Nodes.Node n : nodes.reversed()) n.stop();
    }

    JsonNode replan = null;
    for (String line : Files.readAllLines(metrics)) {
      if (line.contains("\"replan\"")) replan = new ObjectMapper().readTree(line);
    }
    assertTrue(replan != null, "a replan event in metrics.jsonl");
    System.out.printf("whole cluster killed after step %d; replan event: %s%n", stepAtStop, replan);
    assertEquals("checkpoint", replan.path("restored_from").asText(), replan.toString());
    long resumed = replan.path("resumed_at_step").asLong();
    assertEquals(0, resumed % 10, "a checkpoint's step: " + replan);
    assertTrue(resumed >= 20 && resumed <= stepAtStop, replan.toString());

    TrainingJobs.matchesOneDevice(dir.resolve("job"), job("direct", "{ pp = 1 }"), 60);
  }
}
