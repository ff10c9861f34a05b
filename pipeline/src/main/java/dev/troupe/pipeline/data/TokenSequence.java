package dev.troupe.pipeline.data;

import java.util.Arrays;

/**
 * A growing pair of id and label arrays, with the end of the generation prompt and the reference
 * response of one encoded line.
 */
final class TokenSequence {
  private long[] ids = new long[64];
  private long[] labels = new long[64];
  private int length;
  private int promptLength;
  private String reference;

  /** Appends {@code id}; it enters the loss when {@code learn}. Negative ids are skipped. */
  void add(long id, boolean learn) {
    if (id >= 0) {
      addLabeled(id, learn ? id : Example.IGNORE);
    }
  }

  /** Appends every id of {@code more}. */
  void addAll(long[] more, boolean learn) {
    for (long id : more) {
      add(id, learn);
    }
  }

  /** Appends {@code id} with label {@code label} as given. */
  void addLabeled(long id, long label) {
    if (length == ids.length) {
      ids = Arrays.copyOf(ids, length * 2);
      labels = Arrays.copyOf(labels, length * 2);
    }
    ids[length] = id;
    labels[length] = label;
    length++;
  }

  /** Marks everything so far as the generation prompt, and the response it should produce. */
  void endPrompt(String reference) {
    this.promptLength = length;
    this.reference = reference;
  }

  /** Marks the ids before the first label as the prompt, with no reference text. */
  void endPromptAtFirstLabel() {
    int t = 0;
    while (t < length && labels[t] == Example.IGNORE) {
      t++;
    }
    endPrompt(null);
    promptLength = t;
  }

  int length() {
    return length;
  }

  /** The example, cut to its first {@code seqLen} positions. */
  Example toExample(int seqLen) {
    int n = Math.min(length, seqLen);
    return new Example(Arrays.copyOf(ids, n), Arrays.copyOf(labels, n));
  }

  /** The prompt ids, not cut to any length. */
  long[] promptIds() {
    return Arrays.copyOf(ids, promptLength);
  }

  String reference() {
    return reference;
  }
}
