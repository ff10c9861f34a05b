package dev.troupe.pipeline.metrics;

import java.io.PrintStream;
import java.util.Locale;
import java.util.Objects;
import java.util.function.LongSupplier;

/**
 * Training progress for a person watching: on a terminal one line redrawn in place,
 *
 * <pre>[########------------]  42/100 42% loss 2.3121 1,234 tok/s ETA 1m05s</pre>
 *
 * and otherwise (a log file, CI) a plain line at the first update, then at most every ten seconds,
 * and at the last step:
 *
 * <pre>step 42/100 (42%) loss 2.3121 1234 tok/s eta 1m05s</pre>
 *
 * <p>The ETA comes from the steps done and the wall time passed since the first update of this run,
 * so time spent loading before training does not count; until a second update it shows {@code --}.
 * Whether {@code out} is a terminal is the caller's call ({@code System.console() != null}).
 * Thread-safe.
 */
public final class ProgressReporter {
  static final long PLAIN_INTERVAL_NANOS = 10_000_000_000L;
  static final int BAR_WIDTH = 20;

  private final long totalSteps;
  private final long firstStep;
  private final PrintStream out;
  private final boolean terminal;
  private final LongSupplier nanoClock;

  private boolean started;
  private long startNanos;
  private long startStep;
  private long lastPrintNanos;

  /** Terminal: the line now drawn, or null. Plain: the latest line not yet printed, or null. */
  private String line;

  /**
   * A reporter reading time from {@link System#nanoTime}.
   *
   * @param totalSteps the step training ends at
   * @param firstStep the first step this run executes: 1 for a new run, S + 1 after resuming from a
   *     checkpoint at step S
   */
  public ProgressReporter(long totalSteps, long firstStep, PrintStream out, boolean terminal) {
    this(totalSteps, firstStep, out, terminal, System::nanoTime);
  }

  /** As the other constructor, reading time from {@code nanoClock} (as {@link System#nanoTime}). */
  public ProgressReporter(
      long totalSteps, long firstStep, PrintStream out, boolean terminal, LongSupplier nanoClock) {
    if (totalSteps < 1) {
      throw new IllegalArgumentException("totalSteps must be >= 1, got " + totalSteps);
    }
    if (firstStep < 0) {
      throw new IllegalArgumentException("firstStep must be >= 0, got " + firstStep);
    }
    this.totalSteps = totalSteps;
    this.firstStep = firstStep;
    this.out = Objects.requireNonNull(out, "out");
    this.terminal = terminal;
    this.nanoClock = Objects.requireNonNull(nanoClock, "nanoClock");
  }

  /**
   * Reports that {@code step} is done.
   *
   * @param tokensPerSecond shown as given; a negative or non-finite rate shows as {@code ?}
   * @throws IllegalArgumentException if {@code step} is before this run's first step
   */
  public synchronized void update(long step, double loss, double tokensPerSecond) {
    if (step < firstStep) {
      throw new IllegalArgumentException(
          "step " + step + " is before this run's first step " + firstStep);
    }
    long now = nanoClock.getAsLong();
    boolean first = !started;
    if (first) {
      started = true;
      startNanos = now;
      startStep = step;
    }
    String eta = eta(step, now);
    if (terminal) {
      String tps =
          Double.isFinite(tokensPerSecond) && tokensPerSecond >= 0
              ? String.format(Locale.ROOT, "%,d", Math.round(tokensPerSecond))
              : "?";
      int filled = (int) (BAR_WIDTH * clamp(step) / totalSteps);
      String next =
          String.format(
              Locale.ROOT,
              "[%s%s] %"
                  + Long.toString(totalSteps).length()
                  + "d/%d %d%% loss %.4f %s tok/s ETA %s",
              "#".repeat(filled),
              "-".repeat(BAR_WIDTH - filled),
              step,
              totalSteps,
              percent(step),
              loss,
              tps,
              eta);
      int previous = line == null ? 0 : line.length();
      out.print("\r" + next + " ".repeat(Math.max(0, previous - next.length())));
      out.flush();
      line = next;
    } else {
      String tps =
          Double.isFinite(tokensPerSecond) && tokensPerSecond >= 0
              ? Long.toString(Math.round(tokensPerSecond))
              : "?";
      line =
          String.format(
              Locale.ROOT,
              "step %d/%d (%d%%) loss %.4f %s tok/s eta %s",
              step,
              totalSteps,
              percent(step),
              loss,
              tps,
              eta);
      if (first || step >= totalSteps || now - lastPrintNanos >= PLAIN_INTERVAL_NANOS) {
        printPending(now);
      }
    }
  }

  /** Prints {@code text} as a line of its own; on a terminal the progress line is redrawn below. */
  public synchronized void message(String text) {
    if (terminal && line != null) {
      out.print("\r" + " ".repeat(line.length()) + "\r");
      out.println(text);
      out.print(line);
    } else {
      out.println(text);
    }
    out.flush();
  }

  /**
   * Ends the output: on a terminal the progress line is ended with a newline; otherwise the latest
   * update is printed if it was held back. Later updates start over as if nothing was drawn.
   */
  public synchronized void finish() {
    if (terminal) {
      if (line != null) {
        out.println();
        line = null;
      }
    } else {
      printPending(nanoClock.getAsLong());
    }
    out.flush();
  }

  private void printPending(long now) {
    if (line != null) {
      out.println(line);
      line = null;
      lastPrintNanos = now;
    }
  }

  private String eta(long step, long now) {
    if (step >= totalSteps) {
      return "0s";
    }
    long steps = step - startStep;
    long elapsed = now - startNanos;
    if (steps <= 0 || elapsed <= 0) {
      return "--";
    }
    double seconds = (totalSteps - step) * (elapsed / 1e9) / steps;
    return duration(Math.round(seconds));
  }

  /** 45s, 1m05s, 2h03m, 3d04h. */
  static String duration(long seconds) {
    if (seconds < 60) {
      return seconds + "s";
    }
    if (seconds < 3600) {
      return String.format(Locale.ROOT, "%dm%02ds", seconds / 60, seconds % 60);
    }
    if (seconds < 86400) {
      return String.format(Locale.ROOT, "%dh%02dm", seconds / 3600, seconds % 3600 / 60);
    }
    return String.format(Locale.ROOT, "%dd%02dh", seconds / 86400, seconds % 86400 / 3600);
  }

  private long clamp(long step) {
    return Math.max(0, Math.min(step, totalSteps));
  }

  private long percent(long step) {
    return clamp(step) * 100 / totalSteps;
  }
}
