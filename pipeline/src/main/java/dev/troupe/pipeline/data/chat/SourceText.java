package dev.troupe.pipeline.data.chat;

/** A template's text and where it came from, to turn offsets into readable positions. */
record SourceText(String text, String origin) {

  /** {@code "<origin>, line L, column C: <message>"} as an exception. */
  TemplateException error(int offset, String message) {
    int line = 1;
    int column = 1;
    for (int i = 0; i < Math.min(offset, text.length()); i++) {
      if (text.charAt(i) == '\n') {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    return new TemplateException(origin + ", line " + line + ", column " + column + ": " + message);
  }
}
