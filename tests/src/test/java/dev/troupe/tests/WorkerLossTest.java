package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.cli.Main;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.train.Trainer;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The node that trains the job is killed (SIGKILL) mid-run: the split-brain resolver downs it, the
 * coordinator (on a node without devices) sends the job to the other worker, which resumes from the
 * last checkpoint; the job completes with every step once in metrics.jsonl and the per-step losses
 * of the same job trained without interruption. Recovery here redoes the steps since the last
 * checkpoint; keeping copies of the trainable state on other nodes, so that no completed step is
 * redone, is not built.
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

  @Test
  void theJobSurvivesTheLossOfTheNodeThatTrainsIt() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    String extra = "steps = 80\ncheckpoint { every = 5, keep = 2 }";
    Path job = TrainingJobs.job(dir, "job", extra);
    int p1 = Nodes.freePort();
    String contact = "127.0.0.1:" + p1;
    Path conf = dir.resolve("cluster.conf");
    Files.writeString(
        conf,
        """
        troupe.client { contacts = ["%s"], timeout = 30s }
        pekko.cluster.split-brain-resolver.stable-after = 4s
        """
            .formatted(contact));
    List<Nodes.Node> nodes = new ArrayList<>();
    try {
      Nodes.Node coordinator =
          Nodes.start(
              dir,
              "n1",
              "--port",
              String.valueOf(p1),
              "--devices",
              "none",
              "--config",
              conf.toString());
      nodes.add(coordinator);
      Nodes.await(coordinator, "troupe node up: pekko://troupe@" + contact + " devices=0");
      List<Integer> ports = List.of(Nodes.freePort(), Nodes.freePort());
      List<Nodes.Node> workers = new ArrayList<>();
      for (int port : ports) {
        Nodes.Node w =
            Nodes.start(
                dir,
                "w" + port,
                "--port",
                String.valueOf(port),
                "--seeds",
                contact,
                "--roles",
                "worker",
                "--config",
                conf.toString());
        nodes.add(w);
        workers.add(w);
        Nodes.await(coordinator, "troupe node: member up pekko://troupe@127.0.0.1:" + port);
      }
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      assertEquals(
          0,
          Main.run(
              new String[] {"submit", job.toString(), "--config", conf.toString()},
              new PrintStream(out, true, StandardCharsets.UTF_8),
              System.err));

      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
      JsonNode s = status(conf);
      while (s.path("step").asLong() < 12 || !s.has("device")) {
        if (System.nanoTime() > deadline) fail("the job never reached step 12: " + s);
        Thread.sleep(200);
        s = status(conf);
      }
      String device = s.get("device").asText();
      int victim = device.contains(":" + ports.get(0) + "/") ? 0 : 1;
      assertTrue(device.contains(":" + ports.get(victim) + "/"), device);
      long stepAtKill = s.get("step").asLong();
      long killed = System.nanoTime();
      workers.get(victim).process().destroyForcibly();

      long resumedNs = 0;
      while (!s.get("state").asText().equals("COMPLETED")) {
        if (System.nanoTime() > deadline) fail("the job never completed: " + s);
        Thread.sleep(200);
        s = status(conf);
        if (resumedNs == 0
            && s.path("step").asLong() > stepAtKill
            && s.path("device").asText().contains(":" + ports.get(1 - victim) + "/")) {
          resumedNs = System.nanoTime();
        }
      }
      System.out.printf(
          "worker killed at step %d; first step committed by the other worker %.1f s later"
              + " (failure detector: Pekko defaults, split-brain resolver stable-after 4 s)%n",
          stepAtKill, (resumedNs - killed) / 1e9);
      assertEquals(80, s.get("step").asLong());
    } finally {
      for (Nodes.Node n : nodes.reversed()) n.stop();
    }

    List<JsonNode> steps = TrainingJobs.steps(dir.resolve("job/metrics.jsonl"));
    assertEquals(80, steps.size(), "every step once");
    for (int i = 0; i < steps.size(); i++) assertEquals(i + 1, steps.get(i).get("step").asInt());
    Path direct = TrainingJobs.job(dir, "direct", extra);
    new Trainer(JobConfig.load(direct), new PrintStream(new ByteArrayOutputStream()), false).run();
    List<JsonNode> expected = TrainingJobs.steps(dir.resolve("direct/metrics.jsonl"));
    double worst = 0;
    for (int i = 0; i < 80; i++) {
      double a = steps.get(i).get("loss").asDouble();
      double b = expected.get(i).get("loss").asDouble();
      worst = Math.max(worst, Math.abs(a / b - 1));
    }
    System.out.printf(
        "losses against an uninterrupted run: worst relative difference %.2e%n", worst);
    assertTrue(worst <= 1e-6, "losses differ by " + worst);
  }
}
