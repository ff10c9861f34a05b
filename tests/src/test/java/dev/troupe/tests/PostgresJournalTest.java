package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
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
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The coordinator on PostgreSQL (Debian's package, a throwaway server started here): a node runs a
 * job and is killed with SIGKILL; another node, with a data folder of its own but the same journal,
 * recovers the job from the journal and completes it from its last checkpoint, every step once in
 * metrics.jsonl. Skipped where PostgreSQL is not installed ({@code .ci/run} installs it).
 */
class PostgresJournalTest {
  @TempDir Path dir;

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

  /** Runs a PostgreSQL tool, as the postgres user where this test runs as root. */
  private static void pg(Path bin, String tool, String... args) throws Exception {
    List<String> cmd = new ArrayList<>();
    if ("root".equals(System.getProperty("user.name")))
      cmd.addAll(List.of("runuser", "-u", "postgres", "--"));
    cmd.add(bin.resolve(tool).toString());
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (p.waitFor() != 0) fail(tool + " failed: " + out);
  }

  private JsonNode job(Path conf) throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int rc =
        Main.run(
            new String[] {"jobs", "--json", "--config", conf.toString()},
            new PrintStream(out, true, StandardCharsets.UTF_8),
            new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
    if (rc != 0) return null; // the cluster is between coordinators
    String line = out.toString(StandardCharsets.UTF_8).strip();
    return line.isEmpty() ? null : new ObjectMapper().readTree(line.lines().findFirst().get());
  }

  private JsonNode await(Path conf, java.util.function.Predicate<JsonNode> p, String what)
      throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
    while (true) {
      JsonNode j = job(conf);
      if (j != null && p.test(j)) return j;
      if (System.nanoTime() > deadline) fail("the job never " + what + ": " + j);
      Thread.sleep(300);
    }
  }

  @Test
  void anotherNodeRecoversTheJobFromTheSharedJournal() throws Exception {
    Path bin = pgBin();
    Assumptions.assumeTrue(bin != null, "PostgreSQL is not installed (apt install postgresql)");
    Path pgdata = Files.createTempDirectory("troupe-pg");
    try {
      if ("root".equals(System.getProperty("user.name"))) {
        new ProcessBuilder("chown", "-R", "postgres", pgdata.toString()).start().waitFor();
      }
      int pgPort = Nodes.freePort();
      pg(
          bin,
          "initdb",
          "-D",
          pgdata.resolve("data").toString(),
          "-A",
          "trust",
          "-U",
          "postgres",
          "--no-sync");
      pg(
          bin,
          "pg_ctl",
          "-D",
          pgdata.resolve("data").toString(),
          "-w",
          "-l",
          pgdata.resolve("log").toString(),
          "-o",
          "-p " + pgPort + " -k " + pgdata + " -c listen_addresses=127.0.0.1",
          "start");
      try {
        TrainingJobs.writeModelAndData(dir);
        Path jobFile = TrainingJobs.job(dir, "job", "steps = 60\ncheckpoint { every = 5 }");
        int p1 = Nodes.freePort();
        int p2 = Nodes.freePort();
        Path conf = dir.resolve("cluster.conf");
        Files.writeString(
            conf,
            """
            troupe.journal {
              kind = postgres
              url = "jdbc:postgresql://127.0.0.1:%d/postgres"
              user = postgres
            }
            troupe.client { contacts = ["127.0.0.1:%d", "127.0.0.1:%d"], timeout = 10s }
            """
                .formatted(pgPort, p1, p2));
        List<Nodes.Node> nodes = new ArrayList<>();
        try {
          Nodes.Node first =
              Nodes.start(dir, "a", "--port", String.valueOf(p1), "--config", conf.toString());
          nodes.add(first);
          Nodes.await(first, "troupe node up: pekko://troupe@127.0.0.1:" + p1 + " devices=1");
          assertEquals(
              0,
              Main.run(
                  new String[] {"submit", jobFile.toString(), "--config", conf.toString()},
                  new PrintStream(new ByteArrayOutputStream()),
                  System.err));
          long killedAt =
              await(conf, j -> j.path("step").asLong() >= 8, "reached step 8")
                  .path("step")
                  .asLong();
          first.process().destroyForcibly();
          first.process().waitFor(30, TimeUnit.SECONDS);

          Nodes.Node second =
              Nodes.start(dir, "b", "--port", String.valueOf(p2), "--config", conf.toString());
          nodes.add(second);
          Nodes.await(second, "troupe node up: pekko://troupe@127.0.0.1:" + p2 + " devices=1");
          JsonNode done =
              await(conf, j -> j.path("state").asText().equals("COMPLETED"), "completed");
          assertEquals(60, done.path("step").asLong());
          System.out.printf(
              "PostgreSQL journal: node killed at step %d; another node recovered job-1 and"
                  + " completed it%n",
              killedAt);
        } finally {
          for (Nodes.Node n : nodes.reversed()) n.stop();
        }
        List<JsonNode> steps = TrainingJobs.steps(dir.resolve("job/metrics.jsonl"));
        assertEquals(60, steps.size(), "every step once");
        for (int i = 0; i < 60; i++) assertEquals(i + 1, steps.get(i).get("step").asInt());
      } finally {
        pg(bin, "pg_ctl", "-D", pgdata.resolve("data").toString(), "-m", "immediate", "stop");
      }
    } finally {
      new ProcessBuilder("rm", "-rf", pgdata.toString()).start().waitFor();
    }
  }
}
