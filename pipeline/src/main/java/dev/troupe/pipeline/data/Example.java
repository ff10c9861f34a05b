package dev.troupe.pipeline.data;

import java.util.Arrays;
import java.util.Objects;

/**
 * One training sequence before padding: same-length input ids and labels ({@value #IGNORE} = not in
 * the loss), at most {@code seqLen} long.
 *
 * <p>Labels are aligned with the inputs as in Hugging Face: the model shifts them itself, so the
 * label at position {@code t} is the target for the prediction made at position {@code t - 1} and
 * the label at position 0 never enters the loss. The arrays are copied in and out, so an example is
 * immutable.
 */
public record Example(long[] inputIds, long[] labels) {

  /** The label value of positions that do not enter the loss. */
  public static final long IGNORE = -100;

  /**
   * Checks and copies the arrays.
   *
   * @throws IllegalArgumentException if the lengths differ
   */
  public Example {
    Objects.requireNonNull(inputIds, "inputIds");
    Objects.requireNonNull(labels, "labels");
    if (inputIds.length != labels.length) {
      throw new IllegalArgumentException(
          "inputIds has " + inputIds.length + " ids but labels has " + labels.length);
    }
    inputIds = inputIds.clone();
    labels = labels.clone();
  }

  /** A copy of the input ids. */
  @Override
  public long[] inputIds() {
    return inputIds.clone();
  }

  /** A copy of the labels. */
  @Override
  public long[] labels() {
    return labels.clone();
  }

  /** The number of ids. */
  public int length() {
    return inputIds.length;
  }

  /**
   * The number of tokens that enter the loss: positions {@code t >= 1} with a label other than
   * {@value #IGNORE} (position 0 is never predicted, since the labels are shifted).
   */
  public int labelCount() {
    return countLabels(labels, 0, labels.length);
  }

  /** Positions {@code t} in {@code [from + 1, to)} with {@code labels[t] != IGNORE}. */
  static int countLabels(long[] labels, int from, int to) {
    int count = 0;
    for (int t = from + 1; t < to; t++) {
      if (labels[t] != IGNORE) {
        count++;
      }
    }
    return count;
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof Example e
        && Arrays.equals(inputIds, e.inputIds)
        && Arrays.equals(labels, e.labels);
  }

  @Override
  public int hashCode() {
    return 31 * Arrays.hashCode(inputIds) + Arrays.hashCode(labels);
  }

  @Override
  public String toString() {
    return "Example[inputIds="
        + Arrays.toString(inputIds)
        + ", labels="
        + Arrays.toString(labels)
        + "]";
  }
}
