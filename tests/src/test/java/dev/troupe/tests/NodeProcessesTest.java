package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two real {@code troupe node} processes on 127.0.0.1 form a cluster: each reports itself up with
 * its devices, the first sees the second come up, and when the second is stopped (SIGTERM) it
 * leaves gracefully and the first sees it removed. A third node asked to take the first one's port
 * fails with a one-line error that says so. Each node keeps its files in a data folder of its own.
 */
class NodeProcessesTest {
  @TempDir Path tmp;

  @Test
  void twoNodesFormAClusterAndOneLeavesGracefully() throws Exception {
    int p1 = Nodes.freePort();
    int p2 = Nodes.freePort();
    String a1 = "pekko://troupe@127.0.0.1:" + p1;
    String a2 = "pekko://troupe@127.0.0.1:" + p2;
    List<Nodes.Node> nodes = new ArrayList<>();
    try {
      Nodes.Node first =
          Nodes.start(tmp, "first", "--port", String.valueOf(p1), "--devices", "cpu:2");
      nodes.add(first);
      Nodes.await(first, "troupe node up: " + a1 + " devices=2");

      Nodes.Node clash =
          Nodes.start(tmp, "clash", "--port", String.valueOf(p1), "--devices", "cpu");
      nodes.add(clash);
      assertTrue(clash.process().waitFor(90, TimeUnit.SECONDS), "a node on a taken port exits");
      assertEquals(1, clash.process().exitValue(), clash.report());
      String error =
          Files.readAllLines(clash.stderr(), StandardCharsets.UTF_8).stream()
              .filter(l -> l.startsWith("troupe: error: "))
              .findFirst()
              .orElseThrow(() -> new AssertionError("no error line:\n" + clash.report()));
      assertTrue(error.contains("127.0.0.1:" + p1) && error.contains("in use"), clash.report());

      Nodes.Node second =
          Nodes.start(
              tmp,
              "second",
              "--port",
              String.valueOf(p2),
              "--seeds",
              "127.0.0.1:" + p1,
              "--devices",
              "cpu");
      nodes.add(second);
      Nodes.await(second, "troupe node up: " + a2 + " devices=1");
      Nodes.await(second, "troupe node: member up " + a1);
      Nodes.await(first, "troupe node: member up " + a2);

      second.process().destroy(); // SIGTERM: coordinated shutdown leaves the cluster
      assertTrue(second.process().waitFor(60, TimeUnit.SECONDS), "the second node stopped");
      Nodes.await(first, "troupe node: member removed " + a2);
      assertEquals(
          1,
          first.lines().stream().filter(l -> l.startsWith("troupe node up:")).count(),
          "one up line per node:\n" + first.report());
      assertTrue(first.process().isAlive(), "the first node runs on alone:\n" + first.report());
    } finally {
      for (Nodes.Node n : nodes.reversed()) n.stop();
    }
  }
}
