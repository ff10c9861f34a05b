package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Two real {@code troupe node} processes on 127.0.0.1 form a cluster: each reports itself up with
 * its devices, the first sees the second come up, and when the second is stopped (SIGTERM) it
 * leaves gracefully and the first sees it removed.
 */
class NodeProcessesTest {
  /** A node process and the lines it has printed on stdout so far. */
  private record Node(Process process, List<String> lines) {
    boolean printed(String text) {
      return lines.stream().anyMatch(l -> l.equals(text));
    }
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private static Node start(String... args) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(
        List.of("-Xmx256m", "-cp", System.getProperty("java.class.path"), "dev.troupe.cli.Main"));
    cmd.add("node");
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD).start();
    List<String> lines = new CopyOnWriteArrayList<>();
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader r =
                  new BufferedReader(
                      new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) lines.add(line);
              } catch (IOException e) {
                // the process ended
              }
            });
    reader.setDaemon(true);
    reader.start();
    return new Node(p, lines);
  }

  /** Waits up to 90 s (a deadline against hanging, not a timing claim) for {@code line}. */
  private static void await(Node node, String line) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
    while (!node.printed(line)) {
      if (!node.process().isAlive() && !node.printed(line)) {
        fail("node exited (" + node.process().exitValue() + ") before '" + line + "': " + node);
      }
      if (System.nanoTime() > deadline) fail("no '" + line + "' within 90 s: " + node.lines());
      Thread.sleep(100);
    }
  }

  @Test
  void twoNodesFormAClusterAndOneLeavesGracefully() throws Exception {
    int p1 = freePort();
    int p2 = freePort();
    String a1 = "pekko://troupe@127.0.0.1:" + p1;
    String a2 = "pekko://troupe@127.0.0.1:" + p2;
    Node first = null;
    Node second = null;
    try {
      first = start("--port", String.valueOf(p1), "--devices", "cpu:2");
      await(first, "troupe node up: " + a1 + " devices=2");
      second =
          start("--port", String.valueOf(p2), "--seeds", "127.0.0.1:" + p1, "--devices", "cpu");
      await(second, "troupe node up: " + a2 + " devices=1");
      await(second, "troupe node: member up " + a1);
      await(first, "troupe node: member up " + a2);

      second.process().destroy(); // SIGTERM: coordinated shutdown leaves the cluster
      assertTrue(second.process().waitFor(60, TimeUnit.SECONDS), "the second node stopped");
      await(first, "troupe node: member removed " + a2);
      assertEquals(
          1,
          first.lines().stream().filter(l -> l.startsWith("troupe node up:")).count(),
          "one up line per node");
    } finally {
      for (Node n : new Node[] {second, first}) {
        if (n != null) {
          n.process().destroy();
          if (!n.process().waitFor(30, TimeUnit.SECONDS)) n.process().destroyForcibly();
        }
      }
    }
  }
}
