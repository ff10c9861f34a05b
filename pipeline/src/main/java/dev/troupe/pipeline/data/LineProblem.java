package dev.troupe.pipeline.data;

/** Why one JSONL line cannot be used; the message is the "what" part of a DataFormatException. */
final class LineProblem extends Exception {
  private static final long serialVersionUID = 1L;

  LineProblem(String what) {
    super(what, null, false, false);
  }
}
