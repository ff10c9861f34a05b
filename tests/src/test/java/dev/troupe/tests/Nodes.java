package dev.troupe.tests;

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

/** Real {@code troupe node} processes for tests, with what they print on stdout. */
final class Nodes {
  private Nodes() {}

  /** A node process and the lines it has printed on stdout so far. */
  record Node(Process process, List<String> lines) {
    /** Stops the process: SIGTERM, then SIGKILL after 30 s. */
    void stop() throws InterruptedException {
      process.destroy();
      if (!process.waitFor(30, TimeUnit.SECONDS)) process.destroyForcibly();
    }

    boolean printed(String text) {
      return lines.stream().anyMatch(l -> l.equals(text));
    }
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  static Node start(String... args) throws IOException {
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
  static void await(Node node, String line) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
    while (!node.printed(line)) {
      if (!node.process().isAlive() && !node.printed(line)) {
        fail("node exited (" + node.process().exitValue() + ") before '" + line + "': " + node);
      }
      if (System.nanoTime() > deadline) fail("no '" + line + "' within 90 s: " + node.lines());
      Thread.sleep(100);
    }
  }
}
