package dev.troupe.cli;

import java.util.ArrayList;
import java.util.List;

/** Parses token ids as users type them: {@code "1,5,9;3,4,5"} (sequences separated by ';'). */
final class TokenIds {
  private TokenIds() {}

  /** One or more sequences of equal length, each id in {@code [0, vocab)}. */
  static long[][] parseBatch(String option, String text, int vocab) {
    String[] parts = text.split(";", -1);
    List<long[]> seqs = new ArrayList<>();
    for (int s = 0; s < parts.length; s++) {
      seqs.add(parseSequence(option + " sequence " + (s + 1), parts[s], vocab));
    }
    int len = seqs.get(0).length;
    for (int s = 1; s < seqs.size(); s++) {
      if (seqs.get(s).length != len) {
        throw new UsageException(
            option
                + ": sequences must have equal length; sequence 1 has "
                + len
                + " tokens, sequence "
                + (s + 1)
                + " has "
                + seqs.get(s).length);
      }
    }
    return seqs.toArray(long[][]::new);
  }

  /** One sequence of comma-separated ids, each in {@code [0, vocab)}. */
  static long[] parseSequence(String what, String text, int vocab) {
    String trimmed = text.trim();
    if (trimmed.isEmpty()) throw new UsageException(what + ": no token ids");
    String[] items = trimmed.split(",", -1);
    long[] ids = new long[items.length];
    for (int i = 0; i < items.length; i++) {
      String item = items[i].trim();
      try {
        ids[i] = Long.parseLong(item);
      } catch (NumberFormatException e) {
        throw new UsageException(what + ": '" + item + "' is not a token id");
      }
      if (ids[i] < 0 || ids[i] >= vocab) {
        throw new UsageException(
            what + ": token id " + ids[i] + " is outside the vocabulary [0, " + vocab + ")");
      }
    }
    return ids;
  }
}
