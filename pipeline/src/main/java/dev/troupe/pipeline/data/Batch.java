package dev.troupe.pipeline.data;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * A padded microbatch: {@code rows x seqLen}, row-major, right-padded with {@code padId} in the
 * inputs and {@value Example#IGNORE} in the labels. The arrays are copied in and out.
 */
public record Batch(int rows, int seqLen, long[] inputIds, long[] labels) {

  /**
   * Checks the shape and copies the arrays.
   *
   * @throws IllegalArgumentException if {@code rows < 0}, {@code seqLen < 1}, or an array does not
   *     hold {@code rows * seqLen} values
   */
  public Batch {
    Objects.requireNonNull(inputIds, "inputIds");
    Objects.requireNonNull(labels, "labels");
    if (rows < 0 || seqLen < 1) {
      throw new IllegalArgumentException(
          "a batch needs rows >= 0 and seqLen >= 1, got " + rows + " x " + seqLen);
    }
    long size = (long) rows * seqLen;
    if (inputIds.length != size || labels.length != size) {
      throw new IllegalArgumentException(
          "a "
              + rows
              + " x "
              + seqLen
              + " batch needs "
              + size
              + " ids and labels, got "
              + inputIds.length
              + " and "
              + labels.length);
    }
    inputIds = inputIds.clone();
    labels = labels.clone();
  }

  /**
   * Pads {@code examples} on the right to {@code seqLen}, one row each, in order.
   *
   * @throws IllegalArgumentException if there are no examples, an example is longer than {@code
   *     seqLen}, or {@code padId < 0}
   */
  public static Batch of(List<Example> examples, int seqLen, long padId) {
    Objects.requireNonNull(examples, "examples");
    if (examples.isEmpty()) {
      throw new IllegalArgumentException("a batch needs at least one example");
    }
    if (seqLen < 1) {
      throw new IllegalArgumentException("seqLen must be at least 1, got " + seqLen);
    }
    if (padId < 0) {
      throw new IllegalArgumentException("padId must be a token id, got " + padId);
    }
    int rows = examples.size();
    long[] inputs = new long[Math.multiplyExact(rows, seqLen)];
    long[] labels = new long[inputs.length];
    Arrays.fill(inputs, padId);
    Arrays.fill(labels, Example.IGNORE);
    for (int row = 0; row < rows; row++) {
      Example example = examples.get(row);
      if (example.length() > seqLen) {
        throw new IllegalArgumentException(
            "example " + row + " has " + example.length() + " ids, more than seqLen " + seqLen);
      }
      System.arraycopy(example.inputIds(), 0, inputs, row * seqLen, example.length());
      System.arraycopy(example.labels(), 0, labels, row * seqLen, example.length());
    }
    return new Batch(rows, seqLen, inputs, labels);
  }

  /** A copy of the input ids, row-major. */
  @Override
  public long[] inputIds() {
    return inputIds.clone();
  }

  /** A copy of the labels, row-major. */
  @Override
  public long[] labels() {
    return labels.clone();
  }

  /**
   * The tokens that enter the loss: per row, positions {@code t >= 1} whose label is not {@value
   * Example#IGNORE} (the labels are shifted, so a row's first label is never predicted).
   */
  public long labelTokens() {
    long count = 0;
    for (int row = 0; row < rows; row++) {
      count += Example.countLabels(labels, row * seqLen, (row + 1) * seqLen);
    }
    return count;
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof Batch b
        && rows == b.rows
        && seqLen == b.seqLen
        && Arrays.equals(inputIds, b.inputIds)
        && Arrays.equals(labels, b.labels);
  }

  @Override
  public int hashCode() {
    return Objects.hash(rows, seqLen, Arrays.hashCode(inputIds), Arrays.hashCode(labels));
  }

  @Override
  public String toString() {
    return "Batch[" + rows + " x " + seqLen + ", labelTokens=" + labelTokens() + "]";
  }
}
