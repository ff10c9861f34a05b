package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Three real {@code troupe node} processes (one coordinator node, two workers) and the cluster
 * client commands: a job submitted, watched with status, paused, resumed and cancelled; a second
 * job submitted with {@code --follow} completes; a client with the wrong secret is refused.
 */
class ClusterJobsTest {
  @TempDir Path dir;

  /**
   * Polls {@code status JOB} until its line satisfies {@code p} (180 s deadline, no timing claim).
   */
  private String awaitStatus(Path config, String job, Predicate<String> p) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
    while (true) {
      Nodes.ClientRun r = Nodes.client(config, "status", job);
      if (r.status() == 0 && p.test(r.out())) return r.out();
      if (System.nanoTime() > deadline) fail("status of " + job + " never matched: " + r);
      Thread.sleep(300);
    }
  }

  @Test
  void jobsAreSubmittedControlledAndCompletedOnAThreeNodeCluster() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    Path longJob = TrainingJobs.job(dir, "long", "steps = 100000\ncheckpoint { every = 5 }");
    Path shortJob = TrainingJobs.job(dir, "short", "steps = 8");
    int p1 = Nodes.freePort();
    int p2 = Nodes.freePort();
    int p3 = Nodes.freePort();
    String contact = "127.0.0.1:" + p1;
    Path conf = dir.resolve("cluster.conf");
    Files.writeString(
        conf,
        "troupe.client { secret = \"s3cret\", contacts = [\"" + contact + "\"], timeout = 30s }\n");
    Path wrong = dir.resolve("wrong.conf");
    Files.writeString(
        wrong, "troupe.client { secret = \"guess\", contacts = [\"" + contact + "\"] }\n");
    List<Nodes.Node> nodes = new ArrayList<>();
    try {
      Nodes.Node first =
          Nodes.start(dir, "n1", "--port", String.valueOf(p1), "--config", conf.toString());
      nodes.add(first);
      Nodes.await(first, "troupe node up: pekko://troupe@" + contact + " devices=1");
      for (int port : new int[] {p2, p3}) {
        Nodes.Node worker =
            Nodes.start(
                dir,
                "n" + port,
                "--port",
                String.valueOf(port),
                "--seeds",
                contact,
                "--roles",
                "worker",
                "--config",
                conf.toString());
        nodes.add(worker);
        Nodes.await(first, "troupe node: member up pekko://troupe@127.0.0.1:" + port);
      }

      Nodes.ClientRun submitted = Nodes.client(conf, "submit", longJob.toString());
      assertEquals(0, submitted.status(), submitted.toString());
      assertEquals("job-1", submitted.out().strip());
      String status =
          awaitStatus(
              conf,
              "job-1",
              s ->
                  s.contains("RUNNING  step ")
                      && s.contains("devices: 3")
                      && s.contains("members: 3"));
      assertTrue(
          status.contains("tokens/s")
              && status.contains(
                  "plan: job-1 runs pp=1 tp=1 dp=1 stages [0,2) on pekko://troupe@127.0.0.1:"),
          status);
      Nodes.ClientRun pause = Nodes.client(conf, "pause", "job-1");
      assertEquals(0, pause.status(), pause.toString());
      assertTrue(Nodes.client(conf, "status", "job-1").out().contains("PAUSED"));
      assertEquals(0, Nodes.client(conf, "resume", "job-1").status());
      awaitStatus(conf, "job-1", s -> s.contains("RUNNING"));
      assertEquals(0, Nodes.client(conf, "cancel", "job-1").status());
      assertTrue(Nodes.client(conf, "status", "job-1").out().contains("CANCELLED"));

      Nodes.ClientRun refused = Nodes.client(wrong, "jobs");
      assertEquals(1, refused.status(), refused.toString());
      assertTrue(refused.err().contains("secret does not match"), refused.err());
      Nodes.ClientRun unknown = Nodes.client(conf, "pause", "job-9");
      assertEquals(1, unknown.status());
      assertTrue(unknown.err().contains("unknown job 'job-9'"), unknown.err());

      Nodes.ClientRun followed = Nodes.client(conf, "submit", shortJob.toString(), "--follow");
      assertEquals(0, followed.status(), followed.toString());
      assertTrue(followed.out().contains("job-2  COMPLETED  step 8/8"), followed.out());
      Nodes.ClientRun jobs = Nodes.client(conf, "jobs", "--json");
      assertEquals(2, jobs.out().strip().lines().count(), jobs.out());
      assertTrue(jobs.out().contains("\"state\":\"CANCELLED\""), jobs.out());
      assertTrue(Files.isDirectory(dir.resolve("short/adapter")), "the second job's adapter");
    } finally {
      for (Nodes.Node n : nodes.reversed()) n.stop();
    }
  }
}
