package dev.troupe.pipeline.data;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A line of a training data file that cannot be used. The message is {@code "<file>:<line>:
 * <what>"} with the file name as given and a 1-based line number, e.g. {@code "train.jsonl:17:
 * missing string field \"output\""}.
 */
public class DataFormatException extends IOException {
  private static final long serialVersionUID = 1L;

  private final transient Path file;
  private final long line;
  private final String what;

  /** A problem {@code what} on 1-based line {@code line} of {@code file}. */
  public DataFormatException(Path file, long line, String what) {
    super(file + ":" + line + ": " + what);
    this.file = file;
    this.line = line;
    this.what = what;
  }

  /** The data file. */
  public Path file() {
    return file;
  }

  /** The 1-based line number. */
  public long line() {
    return line;
  }

  /** The problem, without file and line. */
  public String what() {
    return what;
  }
}
