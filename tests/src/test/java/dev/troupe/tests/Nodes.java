package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

/**
 * Real {@code troupe node} processes for tests: each runs in the test's folder with a data folder
 * of its own; its stdout lines are collected and its stderr goes to a file, both shown when a test
 * fails.
 */
final class Nodes {
  private Nodes() {}

  /** A node process, the lines it has printed on stdout so far, and the file of its stderr. */
  record Node(String name, Process process, List<String> lines, Path stderr) {
    boolean printed(String text) {
      return lines.stream().anyMatch(l -> l.equals(text));
    }

    /** Stops the process: SIGTERM, then SIGKILL after 30 s. */
    void stop() throws InterruptedException {
      process.destroy();
      if (!process.waitFor(30, TimeUnit.SECONDS)) process.destroyForcibly();
    }

    /** Its stdout lines and the end of its stderr, for failure messages. */
    String report() {
      String err;
      try {
        List<String> all = Files.readAllLines(stderr, StandardCharsets.UTF_8);
        err = String.join("\n", all.subList(Math.max(0, all.size() - 20), all.size()));
      } catch (IOException e) {
        err = "(stderr unreadable: " + e + ")";
      }
      return name + " stdout " + lines + "\n" + name + " stderr (last lines):\n" + err;
    }
  }

  /**
   * Sends {@code signal} (STOP, CONT, TERM, ...) to {@code p} with kill(1): {@code Process.destroy}
   * would send TERM but also close this side of the process's stdout.
   */
  static void signal(Process p, String signal) throws Exception {
    Process kill = new ProcessBuilder("kill", "-" + signal, "" + p.pid()).inheritIO().start();
    if (kill.waitFor() != 0) fail("kill -" + signal + " " + p.pid() + " failed");
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /**
   * Starts {@code troupe node} with {@code args}, working in {@code dir}, data in {@code dir/name}.
   */
  static Node start(Path dir, String name, String... args) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(
        List.of("-Xmx256m", "-cp", System.getProperty("java.class.path"), "dev.troupe.cli.Main"));
    cmd.add("node");
    cmd.addAll(List.of("--data-dir", dir.resolve(name).toString()));
    cmd.addAll(List.of(args));
    Path stderr = dir.resolve(name + ".err");
    Process p =
        new ProcessBuilder(cmd)
            .directory(dir.toFile())
            .redirectError(ProcessBuilder.Redirect.appendTo(stderr.toFile()))
            .start();
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
    return new Node(name, p, lines, stderr);
  }

  /**
   * Starts node {@code n1} on {@code port} with no devices (it only coordinates), as the first node
   * of a new cluster, and waits until it is up.
   */
  static Node coordinatorOnly(Path dir, int port, Path config) throws Exception {
    Node n =
        start(dir, "n1", "--port", "" + port, "--devices", "none", "--config", config.toString());
    await(n, "troupe node up: pekko://troupe@127.0.0.1:" + port + " devices=0");
    return n;
  }

  /**
   * Starts a worker node named {@code name} on {@code port} with one 1-thread CPU device, joining
   * {@code contact}, with the cluster settings of {@code config}.
   */
  static Node worker(Path dir, String name, int port, String contact, Path config)
      throws IOException {
    return start(
        dir,
        name,
        "--port",
        "" + port,
        "--seeds",
        contact,
        "--roles",
        "worker",
        "--devices",
        "cpu:1",
        "--threads-per-device",
        "1",
        "--config",
        config.toString());
  }

  /** The exit status and output of one client command run in this JVM. */
  record ClientRun(int status, String out, String err) {}

  /** Runs {@code troupe ARGS --config CONFIG} in this JVM. */
  static ClientRun client(Path config, String... args) {
    List<String> argv = new ArrayList<>(List.of(args));
    argv.addAll(List.of("--config", config.toString()));
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
    int status =
        dev.troupe.cli.Main.run(
            argv.toArray(String[]::new),
            new java.io.PrintStream(out, true, StandardCharsets.UTF_8),
            new java.io.PrintStream(err, true, StandardCharsets.UTF_8));
    return new ClientRun(
        status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  /** Waits up to 90 s (a deadline against hanging, not a timing claim) for {@code line}. */
  static void await(Node node, String line) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
    while (!node.printed(line)) {
      if (!node.process().isAlive()) {
        Thread.sleep(200); // let the reader take the last lines
        if (node.printed(line)) return;
        fail(
            "node exited ("
                + node.process().exitValue()
                + ") before '"
                + line
                + "':\n"
                + node.report());
      }
      if (System.nanoTime() > deadline) fail("no '" + line + "' within 90 s:\n" + node.report());
      Thread.sleep(100);
    }
  }
}
