package dev.troupe.pipeline.job;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A job file that cannot be used. The message is {@code <file>: <key>: <what>}, or {@code <file>:
 * <what>} where no single key is at fault (a missing file, malformed HOCON).
 */
public class JobConfigException extends IOException {
  private final transient Path file;
  private final String key;

  /** A problem with the value at {@code key} (a full path such as {@code batch.global}). */
  public JobConfigException(Path file, String key, String what) {
    super(file + ": " + key + ": " + what);
    this.file = file;
    this.key = key;
  }

  /** A problem with the file as a whole. */
  public JobConfigException(Path file, String what) {
    super(file + ": " + what);
    this.file = file;
    this.key = null;
  }

  /** A problem with the file as a whole, caused by {@code cause}. */
  public JobConfigException(Path file, String what, Throwable cause) {
    super(file + ": " + what, cause);
    this.file = file;
    this.key = null;
  }

  /** The job file, as given. */
  public Path file() {
    return file;
  }

  /** The full path of the key at fault, or null. */
  public String key() {
    return key;
  }
}
