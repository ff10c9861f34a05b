package dev.troupe.pipeline.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MetricsLogTest {
  @TempDir Path dir;

  private static Map<String, Object> fields(Object... kv) {
    Map<String, Object> m = new LinkedHashMap<>();
    for (int i = 0; i < kv.length; i += 2) {
      m.put((String) kv[i], kv[i + 1]);
    }
    return m;
  }

  @Test
  void resumeKeepsStepsUpToTheCheckpointAndDropsATornLine() throws IOException {
    Path file = dir.resolve("metrics.jsonl");
    Files.writeString(
        file,
        """
        {"event":"start","run":"a"}
        {"step":1,"loss":2.0}
        {"step":2,"loss":1.9}
        {"event":"eval","step":2,"eval_loss":1.8}
        {"step":3,"loss":1.7}
        {"event":"eval","step":4,"eval_loss":1.6}
        {"step":5,"lo\
        """);
    try (MetricsLog log = MetricsLog.open(file, 2)) {
      log.write(fields("step", 3L, "loss", 1.75));
    }
    assertEquals(
        """
        {"event":"start","run":"a"}
        {"step":1,"loss":2.0}
        {"step":2,"loss":1.9}
        {"event":"eval","step":2,"eval_loss":1.8}
        {"step":3,"loss":1.75}
        """,
        Files.readString(file));
    try (Stream<Path> files = Files.list(dir)) {
      assertEquals(List.of(file), files.toList(), "no temporary file left behind");
    }
  }

  @Test
  void aTornLineIsDroppedEvenWhenNoStepIsCut() throws IOException {
    Path file = dir.resolve("metrics.jsonl");
    Files.writeString(file, "{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"loss\":1.");
    try (MetricsLog log = MetricsLog.open(file, 100)) {
      log.write(fields("step", 2, "loss", 1.5));
    }
    assertEquals("{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"loss\":1.5}\n", Files.readString(file));
  }

  @Test
  void aCompleteLastLineMissingOnlyItsNewlineIsKept() throws IOException {
    Path file = dir.resolve("metrics.jsonl");
    Files.writeString(file, "{\"step\":1}\n{\"step\":2}");
    try (MetricsLog log = MetricsLog.open(file, 2)) {
      log.write(fields("step", 3));
    }
    assertEquals("{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n", Files.readString(file));
  }

  @Test
  void garbageAndBlankLinesAreDropped() throws IOException {
    Path file = dir.resolve("metrics.jsonl");
    Files.writeString(
        file, "{\"step\":1}\nnot json\n\n[1,2]\n{\"step\":\"x\"}\n{\"step\":1e400}\n");
    MetricsLog.open(file, 1).close();
    assertEquals("{\"step\":1}\n{\"step\":\"x\"}\n{\"step\":1e400}\n", Files.readString(file));
  }

  @Test
  void resumeStepZeroKeepsOnlyLinesWithoutAPositiveStep() throws IOException {
    Path file = dir.resolve("metrics.jsonl");
    Files.writeString(file, "{\"step\":0,\"lr\":0.0}\n{\"step\":1}\n{\"event\":\"start\"}\n");
    MetricsLog.open(file, 0).close();
    assertEquals("{\"step\":0,\"lr\":0.0}\n{\"event\":\"start\"}\n", Files.readString(file));
  }

  /**
   * A run that wrote steps 1-3 still holds the file when the next run opens it at step 3 and writes
   * step 4 (a node frozen through a failover, woken up with a commit in its mailbox): the old run's
   * late step-4 line goes to the replaced file, and the file shows step 4 once, the new run's.
   */
  @Test
  void aWriterOfAnEarlierRunCannotWriteIntoTheReopenedFile() throws IOException {
    Path file = dir.resolve("metrics.jsonl");
    MetricsLog old = MetricsLog.open(file, 0);
    for (long s = 1; s <= 3; s++) old.write(fields("step", s, "loss", 2.0));
    try (MetricsLog current = MetricsLog.open(file, 3)) {
      old.write(fields("step", 4L, "loss", 9.0));
      current.write(fields("step", 4L, "loss", 1.5));
    }
    old.close();
    assertEquals(
        """
        {"step":1,"loss":2.0}
        {"step":2,"loss":2.0}
        {"step":3,"loss":2.0}
        {"step":4,"loss":1.5}
        """,
        Files.readString(file));
  }

  @Test
  void nonFiniteNumbersAreWrittenAsStringsInKeyOrder() throws IOException {
    Path file = dir.resolve("sub/metrics.jsonl");
    try (MetricsLog log = MetricsLog.open(file, 0)) {
      log.write(
          fields(
              "step",
              7L,
              "loss",
              Double.NaN,
              "grad_norm",
              Double.POSITIVE_INFINITY,
              "min",
              Double.NEGATIVE_INFINITY,
              "f",
              Float.NaN,
              "list",
              List.of(1.5, Double.NaN),
              "arr",
              new double[] {Double.POSITIVE_INFINITY, 2},
              "nested",
              fields("z", 1, "a", true, "s", "x\"y"),
              "none",
              null));
      // Visible before close: every line goes to the OS as it is written.
      assertEquals(
          "{\"step\":7,\"loss\":\"NaN\",\"grad_norm\":\"Infinity\",\"min\":\"-Infinity\","
              + "\"f\":\"NaN\",\"list\":[1.5,\"NaN\"],\"arr\":[\"Infinity\",2.0],"
              + "\"nested\":{\"z\":1,\"a\":true,\"s\":\"x\\\"y\"},\"none\":null}\n",
          Files.readString(file));
    }
  }

  @Test
  void unsupportedValuesAreRejectedAndNothingIsWritten() throws IOException {
    Path file = dir.resolve("metrics.jsonl");
    try (MetricsLog log = MetricsLog.open(file, 0)) {
      var e =
          assertThrows(
              IllegalArgumentException.class,
              () -> log.write(fields("step", 1, "opt", fields("when", new Object()))));
      assertTrue(e.getMessage().contains("opt.when"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> log.write(fields("m", Map.of(1, "one"))));
    }
    assertEquals("", Files.readString(file));
  }

  @Test
  void misuseFailsClearly() throws IOException {
    Path file = dir.resolve("metrics.jsonl");
    assertThrows(IllegalArgumentException.class, () -> MetricsLog.open(file, -1));
    assertFalse(Files.exists(file));
    MetricsLog log = MetricsLog.open(file, 0);
    log.close();
    log.close();
    assertThrows(IllegalStateException.class, () -> log.write(fields("step", 1)));
  }
}
