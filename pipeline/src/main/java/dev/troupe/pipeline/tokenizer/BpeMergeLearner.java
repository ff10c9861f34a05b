package dev.troupe.pipeline.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Greedy byte-level BPE training: pre-tokenizes with the GPT-2 ByteLevel regex, then repeatedly
 * merges the most frequent adjacent symbol pair (ties: smaller left symbol string, then smaller
 * right, by {@link String#compareTo}) until the symbol table is full or no pair occurs twice.
 * Tokens longer than {@link #MAX_TOKEN_BYTES} are not learned. Pair counts are kept incrementally
 * with a lazily invalidated priority queue, so the cost is proportional to the words touched by
 * each merge, not to the whole corpus.
 */
final class BpeMergeLearner {

  /** The regex of Hugging Face's ByteLevel pre-tokenizer (GPT-2). */
  static final Pattern BYTE_LEVEL_SPLIT =
      Pattern.compile(
          "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
          Pattern.UNICODE_CHARACTER_CLASS);

  /** Training text beyond this many chars is ignored, which bounds the training work. */
  static final int MAX_TRAINING_CHARS = 1 << 18;

  /** Longest token learned, in bytes (one byte symbol is one char), against degenerate text. */
  static final int MAX_TOKEN_BYTES = 64;

  /** GPT-2 bytes_to_unicode: the printable code point standing for each byte value. */
  static final String[] BYTE_SYMBOLS = byteSymbols();

  /** One learned merge: the two symbols joined (their concatenation is the new symbol). */
  record Merge(String left, String right) {
    String joined() {
      return left + right;
    }
  }

  private record Candidate(long pair, long count) {}

  private final List<String> symbols = new ArrayList<>();
  private final Map<String, Integer> symbolIds = new HashMap<>();
  private final List<int[]> words = new ArrayList<>();
  private final List<Long> wordCounts = new ArrayList<>();
  private final Map<Long, Long> pairCounts = new HashMap<>();
  private final Map<Long, Set<Integer>> pairWords = new HashMap<>();
  private final PriorityQueue<Candidate> queue =
      new PriorityQueue<>(
          Comparator.comparingLong(Candidate::count)
              .reversed()
              .thenComparing(c -> symbols.get(left(c.pair())))
              .thenComparing(c -> symbols.get(right(c.pair()))));

  private BpeMergeLearner() {
    for (String s : BYTE_SYMBOLS) {
      symbolIds.put(s, symbols.size());
      symbols.add(s);
    }
  }

  /**
   * Learns merges from {@code text} until {@code maxNewSymbols} new symbols exist or no pair
   * repeats. A merge whose result equals a string in {@code reserved} is never made.
   */
  static List<Merge> learn(String text, int maxNewSymbols, Set<String> reserved) {
    BpeMergeLearner learner = new BpeMergeLearner();
    learner.countWords(
        text.length() > MAX_TRAINING_CHARS ? text.substring(0, MAX_TRAINING_CHARS) : text);
    return learner.run(maxNewSymbols, reserved);
  }

  private void countWords(String text) {
    Map<String, Long> counts = new LinkedHashMap<>();
    Matcher m = BYTE_LEVEL_SPLIT.matcher(text);
    while (m.find()) {
      counts.merge(m.group(), 1L, Long::sum);
    }
    for (Map.Entry<String, Long> e : counts.entrySet()) {
      byte[] bytes = e.getKey().getBytes(StandardCharsets.UTF_8);
      int[] word = new int[bytes.length];
      for (int i = 0; i < bytes.length; i++) {
        word[i] = bytes[i] & 0xFF;
      }
      int index = words.size();
      words.add(word);
      wordCounts.add(e.getValue());
      addPairs(index, word, e.getValue());
    }
    for (Map.Entry<Long, Long> e : pairCounts.entrySet()) {
      queue.add(new Candidate(e.getKey(), e.getValue()));
    }
  }

  private List<Merge> run(int maxNewSymbols, Set<String> reserved) {
    List<Merge> merges = new ArrayList<>();
    int newSymbols = 0;
    while (newSymbols < maxNewSymbols && !queue.isEmpty()) {
      Candidate top = queue.poll();
      long current = pairCounts.getOrDefault(top.pair(), 0L);
      if (current != top.count()) {
        continue; // stale entry; the up-to-date count was queued when it changed
      }
      if (current < 2) {
        break;
      }
      String joined = symbols.get(left(top.pair())) + symbols.get(right(top.pair()));
      if (joined.length() > MAX_TOKEN_BYTES || reserved.contains(joined)) {
        continue; // dropped; re-queued only if a neighbouring merge changes its count
      }
      Integer id = symbolIds.get(joined);
      if (id == null) {
        id = symbols.size();
        symbols.add(joined);
        symbolIds.put(joined, id);
        newSymbols++;
      }
      merges.add(new Merge(symbols.get(left(top.pair())), symbols.get(right(top.pair()))));
      applyMerge(top.pair(), id);
    }
    return merges;
  }

  private void applyMerge(long pair, int joined) {
    Set<Integer> touched = pairWords.remove(pair);
    Set<Long> changed = new HashSet<>();
    for (int index : touched.stream().sorted().toList()) {
      int[] word = words.get(index);
      int[] merged = merge(word, left(pair), right(pair), joined);
      if (merged.length == word.length) {
        continue;
      }
      long count = wordCounts.get(index);
      for (int i = 0; i + 1 < word.length; i++) {
        long p = pairOf(word[i], word[i + 1]);
        pairCounts.merge(p, -count, (a, b) -> a + b == 0 ? null : a + b);
        changed.add(p);
      }
      changed.addAll(addPairs(index, merged, count));
      words.set(index, merged);
    }
    pairCounts.remove(pair);
    for (long p : changed) {
      Long c = pairCounts.get(p);
      if (c != null && c >= 2) {
        queue.add(new Candidate(p, c));
      }
    }
  }

  private List<Long> addPairs(int index, int[] word, long count) {
    List<Long> added = new ArrayList<>(word.length);
    for (int i = 0; i + 1 < word.length; i++) {
      long p = pairOf(word[i], word[i + 1]);
      pairCounts.merge(p, count, Long::sum);
      pairWords.computeIfAbsent(p, k -> new HashSet<>()).add(index);
      added.add(p);
    }
    return added;
  }

  private static int[] merge(int[] word, int a, int b, int joined) {
    int[] out = new int[word.length];
    int n = 0;
    for (int i = 0; i < word.length; i++) {
      if (i + 1 < word.length && word[i] == a && word[i + 1] == b) {
        out[n++] = joined;
        i++;
      } else {
        out[n++] = word[i];
      }
    }
    return n == word.length ? word : Arrays.copyOf(out, n);
  }

  private static long pairOf(int a, int b) {
    return ((long) a << 32) | (b & 0xFFFF_FFFFL);
  }

  private static int left(long pair) {
    return (int) (pair >>> 32);
  }

  private static int right(long pair) {
    return (int) pair;
  }

  private static String[] byteSymbols() {
    String[] out = new String[256];
    int extra = 0;
    for (int b = 0; b < 256; b++) {
      boolean printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      out[b] = Character.toString(printable ? b : 256 + extra++);
    }
    return out;
  }
}
