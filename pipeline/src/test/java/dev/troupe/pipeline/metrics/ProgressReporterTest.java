package dev.troupe.pipeline.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class ProgressReporterTest {
  private static final long SECOND = 1_000_000_000L;

  private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
  private final PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8);
  private final AtomicLong now = new AtomicLong(123 * SECOND);

  private String output() {
    return bytes.toString(StandardCharsets.UTF_8).replace(System.lineSeparator(), "\n");
  }

  private void at(double seconds) {
    now.set(123 * SECOND + (long) (seconds * SECOND));
  }

  @Test
  void terminalRedrawsOneLine() {
    ProgressReporter p = new ProgressReporter(100, 1, out, true, now::get);
    at(0);
    p.update(1, 2.5, 1234.4);
    at(10);
    p.update(11, 2.31214, 1234.6); // 10 steps in 10 s, 89 to go
    p.message("saved checkpoint step 11");
    at(20);
    p.update(42, Double.NaN, Double.NaN);
    at(99);
    p.update(100, 1.25, 12345678);
    p.finish();
    String l1 = "[--------------------]   1/100 1% loss 2.5000 1,234 tok/s ETA --";
    String l2 = "[##------------------]  11/100 11% loss 2.3121 1,235 tok/s ETA 1m29s";
    String l3 = "[########------------]  42/100 42% loss NaN ? tok/s ETA 28s";
    String l4 = "[####################] 100/100 100% loss 1.2500 12,345,678 tok/s ETA 0s";
    assertEquals(
        "\r"
            + l1
            + "\r"
            + l2
            + "\r"
            + " ".repeat(l2.length())
            + "\r"
            + "saved checkpoint step 11\n"
            + l2
            + "\r"
            + l3
            + " ".repeat(l2.length() - l3.length())
            + "\r"
            + l4
            + "\n",
        output());
  }

  @Test
  void plainLinesAtMostEveryTenSecondsAndAtTheLastStep() {
    ProgressReporter p = new ProgressReporter(10, 6, out, false, now::get);
    at(0);
    p.update(6, 2.0, 999.6); // first update: printed
    at(5);
    p.update(7, 1.9, 1000); // held back
    p.message("eval loss 1.8");
    at(9.9);
    p.update(8, 1.8, 1000); // held back
    at(10);
    p.update(9, 1.7, 1000); // ten seconds since the last line
    at(11);
    p.update(10, 1.6, 1000); // last step: printed at once
    p.finish(); // nothing held back
    assertEquals(
        """
        step 6/10 (60%) loss 2.0000 1000 tok/s eta --
        eval loss 1.8
        step 9/10 (90%) loss 1.7000 1000 tok/s eta 3s
        step 10/10 (100%) loss 1.6000 1000 tok/s eta 0s
        """,
        output());
  }

  @Test
  void plainFinishPrintsTheUpdateHeldBack() {
    ProgressReporter p = new ProgressReporter(1000, 1, out, false, now::get);
    at(0);
    p.update(1, 3.0, 50);
    at(2);
    p.update(3, 2.0, -1);
    p.finish();
    p.finish();
    assertEquals(
        """
        step 1/1000 (0%) loss 3.0000 50 tok/s eta --
        step 3/1000 (0%) loss 2.0000 ? tok/s eta 16m37s
        """,
        output());
  }

  @Test
  void terminalFinishWithoutUpdatesPrintsNothing() {
    ProgressReporter p = new ProgressReporter(5, 1, out, true, now::get);
    p.message("hello");
    p.finish();
    assertEquals("hello\n", output());
  }

  @Test
  void durations() {
    assertEquals("0s", ProgressReporter.duration(0));
    assertEquals("59s", ProgressReporter.duration(59));
    assertEquals("1m05s", ProgressReporter.duration(65));
    assertEquals("59m59s", ProgressReporter.duration(3599));
    assertEquals("1h00m", ProgressReporter.duration(3600));
    assertEquals("23h59m", ProgressReporter.duration(86399));
    assertEquals("1d01h", ProgressReporter.duration(90061));
  }

  @Test
  void misuseFailsClearly() {
    assertThrows(IllegalArgumentException.class, () -> new ProgressReporter(0, 1, out, true));
    assertThrows(IllegalArgumentException.class, () -> new ProgressReporter(10, -1, out, true));
    ProgressReporter p = new ProgressReporter(10, 5, out, false, now::get);
    assertThrows(IllegalArgumentException.class, () -> p.update(4, 1, 1));
  }
}
