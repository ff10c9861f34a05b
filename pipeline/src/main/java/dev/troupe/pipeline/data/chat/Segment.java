package dev.troupe.pipeline.data.chat;

import java.util.ArrayList;
import java.util.List;

/**
 * One piece of a template: literal text, an output tag {@code {{ }}} or a statement tag {@code {%
 * %}}, with whitespace control and Hugging Face's {@code trim_blocks}, {@code lstrip_blocks} and
 * dropped trailing newline already applied.
 */
record Segment(Kind kind, String content, int start) {

  /** What a segment holds. */
  enum Kind {
    TEXT,
    OUTPUT,
    STATEMENT
  }

  /** Splits {@code source} into segments; comments are dropped. */
  static List<Segment> scan(SourceText source) {
    String src = source.text();
    if (src.endsWith("\n")) {
      src = src.substring(0, src.length() - (src.endsWith("\r\n") ? 2 : 1));
    }
    List<Segment> out = new ArrayList<>();
    int pos = 0;
    boolean trimNext = false;
    boolean afterBlock = false;
    while (true) {
      int open = nextTag(src, pos);
      String text = src.substring(pos, open < 0 ? src.length() : open);
      if (trimNext) {
        text = text.stripLeading();
      } else if (afterBlock && text.startsWith("\n")) {
        text = text.substring(1);
      } else if (afterBlock && text.startsWith("\r\n")) {
        text = text.substring(2);
      }
      if (open < 0) {
        addText(out, text, pos);
        return out;
      }
      char kind = src.charAt(open + 1);
      int inner = open + 2;
      char mark = inner < src.length() ? src.charAt(inner) : 0;
      if (mark == '-') {
        text = text.stripTrailing();
      } else if (kind != '{' && mark != '+') {
        text = lstrip(text, src, open);
      }
      if (mark == '-' || mark == '+') {
        inner++;
      }
      addText(out, text, pos);
      int close = findClose(src, inner, kind);
      if (close < 0) {
        throw source.error(open, "unclosed tag " + src.substring(open, open + 2));
      }
      int end = close;
      trimNext = end > inner && src.charAt(end - 1) == '-';
      if (trimNext) {
        end--;
      }
      if (kind != '#') {
        Kind k = kind == '{' ? Kind.OUTPUT : Kind.STATEMENT;
        out.add(new Segment(k, src.substring(inner, end), inner));
      }
      afterBlock = kind != '{';
      pos = close + 2;
    }
  }

  private static void addText(List<Segment> out, String text, int start) {
    if (!text.isEmpty()) {
      out.add(new Segment(Kind.TEXT, text, start));
    }
  }

  /**
   * Drops the spaces and tabs before the block tag at {@code open} when only they stand between it
   * and the start of its line in the source ({@code lstrip_blocks}).
   */
  private static String lstrip(String text, String src, int open) {
    int j = open;
    while (j > 0 && (src.charAt(j - 1) == ' ' || src.charAt(j - 1) == '\t')) {
      j--;
    }
    if (j > 0 && src.charAt(j - 1) != '\n') {
      return text;
    }
    int run = open - j;
    return text.substring(0, Math.max(0, text.length() - run));
  }

  private static int nextTag(String src, int from) {
    for (int i = src.indexOf('{', from); i >= 0; i = src.indexOf('{', i + 1)) {
      if (i + 1 < src.length() && "{%#".indexOf(src.charAt(i + 1)) >= 0) {
        return i;
      }
    }
    return -1;
  }

  private static int findClose(String src, int from, char kind) {
    if (kind == '#') {
      return src.indexOf("#}", from);
    }
    char first = kind == '{' ? '}' : '%';
    char quote = 0;
    for (int i = from; i + 1 < src.length(); i++) {
      char c = src.charAt(i);
      if (quote != 0) {
        if (c == '\\') {
          i++;
        } else if (c == quote) {
          quote = 0;
        }
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == first && src.charAt(i + 1) == '}') {
        return i;
      }
    }
    return -1;
  }
}
