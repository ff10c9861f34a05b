package dev.troupe.pipeline.demo;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.troupe.pipeline.io.AtomicFile;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The demo's data, generated here (nothing is downloaded): chat-format string tasks on short random
 * words. The base model learns {@code copy} and {@code reverse}; the fine-tuning task, which the
 * base has never seen, is {@code upper} (the word in capitals).
 *
 * <p>Words use only letters that appear in none of the template's words (user, assistant, copy,
 * reverse, upper), so the demo tokenizer's merges, learned from the template, never split a word
 * into multi-letter tokens: every task is letter by letter.
 */
public final class DemoData {
  /** Letters of the random words. */
  public static final String LETTERS = "bdfghjklmqwxz";

  private DemoData() {}

  /**
   * One of the base model's tasks: {@code copy w} or {@code reverse w}, the word in small letters
   * or in capitals (so the base can write both; what it has never seen is turning one into the
   * other).
   */
  static String pretrainLine(SplittableRandom r) {
    String w = word(r);
    if (r.nextBoolean()) w = w.toUpperCase(Locale.ROOT);
    boolean copy = r.nextBoolean();
    return chat(
        (copy ? "copy " : "reverse ") + w, copy ? w : new StringBuilder(w).reverse().toString());
  }

  /** The fine-tuning task: {@code upper w}. */
  static String taskLine(SplittableRandom r) {
    String w = word(r);
    return chat("upper " + w, w.toUpperCase(Locale.ROOT));
  }

  /** Text the demo tokenizer learns its merges from: the chat template and task words only. */
  static String tokenizerCorpus() {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < 50; i++) {
      for (String t : new String[] {"copy", "reverse", "upper"}) {
        sb.append("<|user|>\n").append(t).append(" \n<|assistant|>\n");
      }
    }
    return sb.toString();
  }

  /** Writes {@code n} pretraining lines to {@code file}. */
  static void writePretrain(Path file, int n, long seed) throws IOException {
    SplittableRandom r = new SplittableRandom(seed);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < n; i++) sb.append(pretrainLine(r)).append('\n');
    AtomicFile.write(file, sb.toString().getBytes(StandardCharsets.UTF_8));
  }

  /** Writes {@code n} fine-tuning task lines to {@code file}. */
  static void writeTask(Path file, int n, long seed) throws IOException {
    SplittableRandom r = new SplittableRandom(seed);
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < n; i++) sb.append(taskLine(r)).append('\n');
    AtomicFile.write(file, sb.toString().getBytes(StandardCharsets.UTF_8));
  }

  private static String word(SplittableRandom r) {
    int n = 3 + r.nextInt(4);
    StringBuilder w = new StringBuilder();
    for (int i = 0; i < n; i++) w.append(LETTERS.charAt(r.nextInt(LETTERS.length())));
    return w.toString();
  }

  private static String chat(String user, String assistant) {
    ObjectMapper m = new ObjectMapper();
    ObjectNode line = m.createObjectNode();
    var msgs = line.putArray("messages");
    msgs.addObject().put("role", "user").put("content", user);
    msgs.addObject().put("role", "assistant").put("content", assistant);
    return line.toString();
  }
}
