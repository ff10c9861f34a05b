package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.cli.Main;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The coordinator on PostgreSQL (Debian's package; each test starts a throwaway server as the
 * postgres user): the job survives the loss of the coordinator's node, whether another node is
 * started on the same journal or a surviving coordinator node takes the singleton over; a job over
 * two devices goes on from its last committed step, its state recalled from the workers' copies,
 * whether the coordinator's node is killed or frozen (SIGSTOP; after SIGCONT it finds itself downed
 * and exits, its coordinator having done nothing more). Skipped where PostgreSQL is not installed
 * ({@code .ci/run} installs it).
 */
class PostgresJournalTest {
  @TempDir Path dir;

  /**
   * The failure detection of the failover tests: the singleton starts on another node at about
   * detection + stable-after + removal + the singleton's removal margin (stable-after, the split
   * brain resolver's default).
   */
  private static final String FAILOVER =
      """
      pekko.cluster.failure-detector { heartbeat-interval = 500ms, acceptable-heartbeat-pause = 1500ms }
      pekko.cluster.split-brain-resolver.stable-after = 1500ms
      pekko.cluster { gossip-interval = 500ms, leader-actions-interval = 500ms }
      """;

  private Path bin;
  private Path pgdata;
  private int pgPort;
  private final List<Nodes.Node> nodes = new ArrayList<>();

  private static Path pgBin() throws IOException {
    Path root = Path.of("/usr/lib/postgresql");
    if (!Files.isDirectory(root)) return null;
    try (Stream<Path> versions = Files.list(root)) {
      return versions
          .map(v -> v.resolve("bin"))
          .filter(b -> Files.isExecutable(b.resolve("initdb")))
          .max(Comparator.naturalOrder())
          .orElse(null);
    }
  }

  private static boolean root() {
    return "root".equals(System.getProperty("user.name"));
  }

  /** Runs a PostgreSQL tool, as the postgres user where this test runs as root. */
  private void pg(String tool, String... args) throws Exception {
    List<String> cmd = new ArrayList<>();
    if (root()) cmd.addAll(List.of("runuser", "-u", "postgres", "--"));
    cmd.add(bin.resolve(tool).toString());
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (p.waitFor() != 0) fail(tool + " failed: " + out);
  }

  @BeforeEach
  void startServer() throws Exception {
    bin = pgBin();
    Assumptions.assumeTrue(bin != null, "PostgreSQL is not installed (apt install postgresql)");
    pgdata = Files.createTempDirectory("troupe-pg");
    if (root()) new ProcessBuilder("chown", "-R", "postgres", pgdata.toString()).start().waitFor();
    pgPort = Nodes.freePort();
    String data = pgdata.resolve("data").toString();
    pg("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync");
    pg(
        "pg_ctl",
        "-D",
        data,
        "-w",
        "-l",
        pgdata.resolve("log").toString(),
        "-o",
        "-p " + pgPort + " -k " + pgdata + " -c listen_addresses=127.0.0.1",
        "start");
  }

  @AfterEach
  void stopAll() throws Exception {
    for (Nodes.Node n : nodes.reversed()) n.stop();
    if (pgdata != null) {
      pg("pg_ctl", "-D", pgdata.resolve("data").toString(), "-m", "immediate", "stop");
      new ProcessBuilder("rm", "-rf", pgdata.toString()).start().waitFor();
    }
  }

  /** A node and client configuration on this test's PostgreSQL, with the given contacts. */
  private Path config(String extra, int... contacts) throws IOException {
    List<String> hosts = new ArrayList<>();
    for (int c : contacts) hosts.add("\"127.0.0.1:" + c + "\"");
    Path conf = dir.resolve("cluster.conf");
    Files.writeString(
        conf,
        """
        troupe.journal {
          kind = postgres
          url = "jdbc:postgresql://127.0.0.1:%d/postgres"
          user = postgres
        }
        troupe.client { contacts = [%s], timeout = 10s }
        %s
        """
            .formatted(pgPort, String.join(", ", hosts), extra));
    return conf;
  }

  private Nodes.Node node(String name, Path conf, String... args) throws IOException {
    List<String> all = new ArrayList<>(List.of(args));
    all.addAll(List.of("--config", conf.toString()));
    Nodes.Node n = Nodes.start(dir, name, all.toArray(String[]::new));
    nodes.add(n);
    return n;
  }

  private static JsonNode job(Path conf) throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int rc =
        Main.run(
            new String[] {"jobs", "--json", "--config", conf.toString()},
            new PrintStream(out, true, StandardCharsets.UTF_8),
            new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
    if (rc != 0) return null; // no coordinator answers right now
    String line = out.toString(StandardCharsets.UTF_8).strip();
    return line.isEmpty() ? null : new ObjectMapper().readTree(line.lines().findFirst().get());
  }

  /**
   * Polls the first job until {@code p} holds (180 s deadline against hanging, no timing claim).
   */
  private static JsonNode await(Path conf, Predicate<JsonNode> p, String what) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
    while (true) {
      JsonNode j = job(conf);
      if (j != null && p.test(j)) return j;
      if (System.nanoTime() > deadline) fail("the job never " + what + ": " + j);
      Thread.sleep(300);
    }
  }

  /**
   * Waits until {@code metrics} (written on this machine) has a step past {@code step} and returns
   * the seconds since {@code since} (System.nanoTime), with the replan line printed.
   */
  private double pastStep(Path metrics, long step, long since) throws Exception {
    long deadline = since + TimeUnit.SECONDS.toNanos(180);
    while (TrainingJobs.lastStep(metrics) <= step) {
      if (System.nanoTime() > deadline) {
        // the nodes' logs go with the test's directory: keep what they said in the failure
        StringBuilder logs = new StringBuilder();
        for (Nodes.Node n : nodes) logs.append('\n').append(n.report());
        fail("the job never got past step " + step + logs);
      }
      Thread.sleep(20);
    }
    return (System.nanoTime() - since) / 1e9;
  }

  private void submit(Path conf, Path job) {
    assertEquals(
        0,
        Main.run(
            new String[] {"submit", job.toString(), "--config", conf.toString()},
            new PrintStream(new ByteArrayOutputStream()),
            System.err));
  }

  /**
   * No node dropped a message as too large for Artery's ordinary lane (a large message sent to a
   * path that is not on the large-message lane is logged and lost, and a recall that loses its
   * answer silently falls back to fewer copies).
   */
  private void assertNothingOversized() throws IOException {
    for (Nodes.Node n : nodes) {
      String err = Files.readString(n.stderr());
      assertFalse(
          err.contains("oversized"),
          n.name()
              + " dropped an oversized message: "
              + err.lines().filter(l -> l.contains("oversized")).findFirst().orElse(""));
    }
  }

  private void assertEveryStepOnce(int total) throws IOException {
    List<JsonNode> steps = TrainingJobs.steps(dir.resolve("job/metrics.jsonl"));
    assertEquals(total, steps.size(), "every step once");
    for (int i = 0; i < total; i++) assertEquals(i + 1, steps.get(i).get("step").asInt());
  }

  @Test
  void aNewNodeRecoversTheJobFromTheSharedJournal() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    Path jobFile = TrainingJobs.job(dir, "job", "steps = 300\ncheckpoint { every = 10 }");
    int p1 = Nodes.freePort();
    int p2 = Nodes.freePort();
    Path conf = config("", p1, p2);
    Nodes.Node first = node("a", conf, "--port", String.valueOf(p1));
    Nodes.await(first, "troupe node up: pekko://troupe@127.0.0.1:" + p1 + " devices=1");
    submit(conf, jobFile);
    long killedAt =
        await(conf, j -> j.path("step").asLong() >= 8, "reached step 8").path("step").asLong();
    first.process().destroyForcibly();
    first.process().waitFor(30, TimeUnit.SECONDS);

    Nodes.Node second = node("b", conf, "--port", String.valueOf(p2));
    Nodes.await(second, "troupe node up: pekko://troupe@127.0.0.1:" + p2 + " devices=1");
    JsonNode done = await(conf, j -> j.path("state").asText().equals("COMPLETED"), "completed");
    assertEquals(300, done.path("step").asLong());
    System.out.printf(
        "PostgreSQL journal: node killed at step %d; a new node recovered job-1 and completed it%n",
        killedAt);
    assertEveryStepOnce(300);
  }

  @Test
  void theSingletonMovesWhenTheCoordinatorsNodeDies() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    Path jobFile = TrainingJobs.job(dir, "job", "steps = 300\ncheckpoint { every = 10 }");
    int p1 = Nodes.freePort();
    int p2 = Nodes.freePort();
    int p3 = Nodes.freePort();
    Path conf = config(FAILOVER, p1, p2);
    Nodes.Node first = node("a", conf, "--port", String.valueOf(p1));
    Nodes.await(first, "troupe node up: pekko://troupe@127.0.0.1:" + p1 + " devices=1");
    String seed = "127.0.0.1:" + p1;
    node("b", conf, "--port", String.valueOf(p2), "--seeds", seed);
    node("c", conf, "--port", String.valueOf(p3), "--seeds", seed, "--roles", "worker");
    Nodes.await(first, "troupe node: member up pekko://troupe@127.0.0.1:" + p2);
    Nodes.await(first, "troupe node: member up pekko://troupe@127.0.0.1:" + p3);
    submit(conf, jobFile);
    JsonNode running = await(conf, j -> j.path("step").asLong() >= 12, "reached step 12");
    // the singleton runs on the oldest coordinator node, a, and sends the job to a's own device
    assertTrue(running.path("device").asText().contains(":" + p1 + "/"), running.toString());
    first.process().destroyForcibly();
    long killed = System.nanoTime();
    Path metrics = dir.resolve("job/metrics.jsonl");
    long stepAtKill = TrainingJobs.lastStep(metrics);
    double seconds = pastStep(metrics, stepAtKill, killed);
    JsonNode done = await(conf, j -> j.path("state").asText().equals("COMPLETED"), "completed");
    assertTrue(!done.path("device").asText().contains(":" + p1 + "/"), done.toString());
    assertEquals(300, done.path("step").asLong());
    System.out.printf(
        "coordinator's node (which trained the job) killed after step %d; step %d written %.1f s"
            + " later (%s)%n",
        stepAtKill, stepAtKill + 1, seconds, FAILOVER.replace('\n', ' '));
    assertEveryStepOnce(300);
    JsonNode replan = replan();
    // the job ran on a's device, which kept copies of its state on a device of another node; it
    // resumes at the committed step, or at the one before where a was lost between journaling a
    // step and writing its metrics line (that step is computed again)
    assertEquals("copies", replan.path("restored_from").asText(), replan.toString());
    assertNothingOversized();
    long c = replan.path("committed_step").asLong();
    long r = replan.path("resumed_at_step").asLong();
    assertTrue(r == c || r == c - 1, replan.toString());
  }

  /** The last replan line of the job's metrics.jsonl, printed. */
  private JsonNode replan() throws IOException {
    JsonNode replan = null;
    for (String line : Files.readAllLines(dir.resolve("job/metrics.jsonl"))) {
      if (line.contains("\"replan\"")) replan = new ObjectMapper().readTree(line);
    }
    System.out.println("replan event: " + replan);
    assertTrue(replan != null, "a replan event");
    return replan;
  }

  /**
   * @param how {@code kill}: kill -9 of the coordinator's node, which drives a pp=2 run on two
   *     workers; {@code freeze}: SIGSTOP of it until the job has gone on under the other
   *     coordinator node, then SIGCONT: the frozen node must learn that it was downed and exit, and
   *     its coordinator and run must write nothing more (a journal write of the old coordinator is
   *     refused, since the new one wrote that sequence number, and its run writes a step's metrics
   *     only once the step is journaled: every step once in metrics.jsonl); {@code kill, one
   *     device}: the job runs on one worker's device, whose run waits for the commit of its next
   *     step until the new coordinator runs the job again there, from the copies of its state
   */
  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"kill", "freeze", "kill, one device"})
  void aJobOnWorkersGoesOnWhenTheCoordinatorsNodeIsLost(String how) throws Exception {
    boolean one = how.endsWith("one device");
    String parallel = one ? "{ pp = 1 }" : "{ pp = 2 }";
    int steps = 200;
    ParallelPlansTest.writeModelAndData(dir);
    String plain =
        "steps = "
            + steps
            + "\ncheckpoint { every = 5000 }\n"
            + "lora.targets = [q_proj, v_proj, down_proj]\n"
            + "optimizer { lr = 5e-3, schedule = cosine, warmup-steps = 3, max-grad-norm = 1.0 }\n";
    Path jobFile = TrainingJobs.exactJob(dir, "job", plain + "parallel " + parallel);
    int p1 = Nodes.freePort();
    int p2 = Nodes.freePort();
    Path conf = config(FAILOVER, p1, p2);
    String seed = "127.0.0.1:" + p1;
    Nodes.Node first = node("a", conf, "--port", "" + p1, "--devices", "none");
    Nodes.await(first, "troupe node up: pekko://troupe@127.0.0.1:" + p1 + " devices=0");
    node("b", conf, "--port", "" + p2, "--seeds", seed, "--devices", "none");
    Nodes.await(first, "troupe node: member up pekko://troupe@127.0.0.1:" + p2);
    for (String w : List.of("c", "d")) {
      int port = Nodes.freePort();
      node(
          w,
          conf,
          "--port",
          "" + port,
          "--seeds",
          seed,
          "--roles",
          "worker",
          "--devices",
          "cpu:1",
          "--threads-per-device",
          "1");
      Nodes.await(first, "troupe node: member up pekko://troupe@127.0.0.1:" + port);
    }
    submit(conf, jobFile);
    JsonNode running = await(conf, j -> j.path("step").asLong() >= 12, "reached step 12");
    assertTrue(
        running.path("plan").asText().startsWith(parallel.contains("2") ? "pp=2" : "pp=1"),
        running.toString());
    if (how.startsWith("kill")) first.process().destroyForcibly();
    else Nodes.signal(first.process(), "STOP");
    long killed = System.nanoTime();
    Path metrics = dir.resolve("job/metrics.jsonl");
    long stepAtKill = TrainingJobs.lastStep(metrics);
    double seconds = pastStep(metrics, stepAtKill, killed);
    if (how.equals("freeze")) {
      Nodes.signal(first.process(), "CONT");
      assertTrue(
          first.process().waitFor(60, TimeUnit.SECONDS),
          "the frozen coordinator node exits once it runs again: " + first.report());
      System.out.println("the frozen coordinator node exited " + first.process().exitValue());
      String err = Files.readString(first.stderr());
      System.out.println(
          "its stderr after SIGCONT (last lines):\n"
              + String.join(
                  "\n", err.lines().toList().reversed().stream().limit(8).toList().reversed()));
      // a write it tried was refused: the other coordinator had journaled that sequence number
      System.out.println(
          "its coordinator "
              + (err.contains("Failed to persist")
                  ? "tried to journal a step and was refused"
                  : "journaled nothing"));
    }
    JsonNode done = await(conf, j -> j.path("state").asText().equals("COMPLETED"), "completed");
    assertEquals(steps, done.path("step").asLong(), done.toString());
    assertEquals(3, done.path("members").asInt(), done.toString());
    assertEveryStepOnce(steps);
    JsonNode replan = replan();
    System.out.printf(
        "%s job: coordinator's node %s after step %d; step %d written %.1f s later (%s)%n",
        one ? "one-device" : "pp=2",
        how.startsWith("kill") ? "killed" : "frozen",
        stepAtKill,
        stepAtKill + 1,
        seconds,
        FAILOVER.replace('\n', ' '));
    // a one-device run waited for the commit of its next step (no coordinator listened) until the
    // new coordinator ran the job again there; either kind restores from the copies of the
    // committed step, or of the one before where the coordinator was lost between journaling a
    // step and writing its metrics line (that step is computed again)
    assertEquals("copies", replan.path("restored_from").asText(), replan.toString());
    long c = replan.path("committed_step").asLong();
    long r = replan.path("resumed_at_step").asLong();
    assertTrue(r == c || r == c - 1, replan.toString());
    assertNothingOversized();
    TrainingJobs.matchesOneDevice(
        dir.resolve("job"),
        TrainingJobs.exactJob(dir, "direct", plain + "parallel { pp = 1 }"),
        steps);
  }
}
