package dev.troupe.pipeline.data.chat;

import java.util.ArrayList;
import java.util.List;

/** One token of a tag's expression text, at offset {@code pos} in the template. */
record Token(Kind kind, String text, Object value, int pos) {

  /** Token kinds. */
  enum Kind {
    NAME,
    STRING,
    INT,
    OP,
    END
  }

  private static final String[] OPS = {
    "==", "!=", "<=", ">=", "//", "(", ")", "[", "]", ".", ",", ":", "|", "~", "+", "-", "*", "/",
    "%", "<", ">", "="
  };

  boolean is(String op) {
    return (kind == Kind.OP || kind == Kind.NAME) && text.equals(op);
  }

  /** The tokens of {@code text}, which starts at offset {@code start}, ending with an END token. */
  static List<Token> lex(String text, int start, SourceText source) {
    List<Token> out = new ArrayList<>();
    int i = 0;
    while (true) {
      while (i < text.length() && Character.isWhitespace(text.charAt(i))) {
        i++;
      }
      int pos = start + i;
      if (i >= text.length()) {
        out.add(new Token(Kind.END, "", null, pos));
        return out;
      }
      char c = text.charAt(i);
      if (Character.isLetter(c) || c == '_') {
        int j = i;
        while (j < text.length()
            && (Character.isLetterOrDigit(text.charAt(j)) || text.charAt(j) == '_')) {
          j++;
        }
        out.add(new Token(Kind.NAME, text.substring(i, j), null, pos));
        i = j;
      } else if (Character.isDigit(c)) {
        int j = i;
        while (j < text.length() && Character.isDigit(text.charAt(j))) {
          j++;
        }
        out.add(
            new Token(Kind.INT, text.substring(i, j), Long.parseLong(text.substring(i, j)), pos));
        i = j;
      } else if (c == '\'' || c == '"') {
        StringBuilder s = new StringBuilder();
        int j = i + 1;
        while (j < text.length() && text.charAt(j) != c) {
          char d = text.charAt(j);
          if (d == '\\' && j + 1 < text.length()) {
            j++;
            char e = text.charAt(j);
            switch (e) {
              case 'n' -> s.append('\n');
              case 't' -> s.append('\t');
              case 'r' -> s.append('\r');
              default -> s.append(e);
            }
          } else {
            s.append(d);
          }
          j++;
        }
        if (j >= text.length()) {
          throw source.error(pos, "unterminated string literal");
        }
        out.add(new Token(Kind.STRING, text.substring(i, j + 1), s.toString(), pos));
        i = j + 1;
      } else {
        String op = null;
        for (String candidate : OPS) {
          if (text.startsWith(candidate, i)) {
            op = candidate;
            break;
          }
        }
        if (op == null) {
          throw source.error(pos, "unexpected character '" + c + "'");
        }
        out.add(new Token(Kind.OP, op, null, pos));
        i += op.length();
      }
    }
  }
}
