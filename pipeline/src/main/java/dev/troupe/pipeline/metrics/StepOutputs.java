package dev.troupe.pipeline.metrics;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The metrics.jsonl lines and TensorBoard scalars of one training step, held until the step is
 * committed and then written in the order they were made ({@link #writeTo}). A run whose steps a
 * coordinator journals writes a step's outputs only once the journal has the step, so that a run
 * the coordinator no longer owns (a stale coordinator's, or one on a node that was frozen) writes
 * nothing for steps the journal does not have. Not thread-safe.
 */
public final class StepOutputs {
  private sealed interface Output permits Line, Scalar {}

  private record Line(Map<String, ?> fields) implements Output {}

  private record Scalar(String tag, long step, double value) implements Output {}

  private final List<Output> held = new ArrayList<>();

  /** A line for metrics.jsonl (see {@link MetricsLog#write}). */
  public void line(Map<String, ?> fields) {
    held.add(new Line(fields));
  }

  /** A scalar for TensorBoard (see {@link TensorBoardWriter#scalar}). */
  public void scalar(String tag, long step, double value) {
    held.add(new Scalar(tag, step, value));
  }

  /** Whether nothing is held. */
  public boolean isEmpty() {
    return held.isEmpty();
  }

  /** Writes everything held, in order, and holds nothing afterwards. */
  public void writeTo(MetricsLog metrics, TensorBoardWriter tb) throws IOException {
    try {
      for (Output o : held) {
        switch (o) {
          case Line l -> metrics.write(l.fields());
          case Scalar s -> tb.scalar(s.tag(), s.step(), s.value());
        }
      }
    } finally {
      held.clear();
    }
  }
}
