package dev.troupe.pipeline.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.InstantSource;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Reads an event file with TensorBoard's own Python reader (or TensorFlow's), where {@code
 * /usr/bin/python3} has one; skipped otherwise.
 */
class TensorBoardRealReaderTest {
  private static final Path PYTHON = Path.of("/usr/bin/python3");

  private static final String SCRIPT =
      """
      import sys
      path = sys.argv[1]
      try:
          from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
          acc = EventAccumulator(path, size_guidance={"scalars": 0})
          acc.Reload()
          rows = [(t, s.step, s.value, s.wall_time)
                  for t in acc.Tags()["scalars"] for s in acc.Scalars(t)]
      except ImportError:
          import tensorflow as tf
          rows = [(v.tag, e.step, v.simple_value, e.wall_time)
                  for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value]
      for tag, step, value, wall_time in rows:
          print("%s\\t%d\\t%r\\t%r" % (tag, step, float(value), float(wall_time)))
      """;

  @TempDir Path dir;

  private static boolean hasModule(String module) {
    if (!Files.isExecutable(PYTHON)) {
      return false;
    }
    try {
      Process p =
          new ProcessBuilder(PYTHON.toString(), "-c", "import " + module)
              .redirectErrorStream(true)
              .redirectOutput(ProcessBuilder.Redirect.DISCARD)
              .start();
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        return false;
      }
      return p.exitValue() == 0;
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  @Test
  void tensorBoardReadsWhatWeWrite() throws Exception {
    assumeTrue(
        hasModule("tensorboard") || hasModule("tensorflow"),
        "no tensorboard or tensorflow module for /usr/bin/python3");
    Path file;
    List<ScalarEvent> expected;
    try (TensorBoardWriter tb =
        TensorBoardWriter.open(dir, InstantSource.fixed(TensorBoardWriterTest.T0))) {
      file = tb.file();
      expected = TensorBoardWriterTest.writeSample(tb);
    }
    Path script = dir.resolve("read.py");
    Files.writeString(script, SCRIPT);
    Process p =
        new ProcessBuilder(PYTHON.toString(), script.toString(), file.toString())
            .redirectError(ProcessBuilder.Redirect.DISCARD)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertEquals(true, p.waitFor(120, TimeUnit.SECONDS), "python reader timed out");
    assertEquals(0, p.exitValue(), "python reader failed; output: " + out);

    // The accumulator groups by tag; compare in one order.
    Comparator<ScalarEvent> order =
        Comparator.comparing(ScalarEvent::tag).thenComparingLong(ScalarEvent::step);
    List<ScalarEvent> got =
        out.lines().map(TensorBoardRealReaderTest::parseRow).sorted(order).toList();
    assertEquals(expected.stream().sorted(order).toList(), got);
  }

  /** One "tag, step, value, wall time" row as Python printed it (repr: nan, inf, 1e-05). */
  private static ScalarEvent parseRow(String row) {
    String[] f = row.split("\t");
    return new ScalarEvent(
        f[0], Long.parseLong(f[1]), (float) parsePython(f[2]), parsePython(f[3]));
  }

  private static double parsePython(String v) {
    return switch (v) {
      case "nan" -> Double.NaN;
      case "inf" -> Double.POSITIVE_INFINITY;
      case "-inf" -> Double.NEGATIVE_INFINITY;
      default -> Double.parseDouble(v);
    };
  }
}
