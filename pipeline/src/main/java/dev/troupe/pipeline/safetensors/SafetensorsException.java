package dev.troupe.pipeline.safetensors;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A safetensors file, shard index or model folder that cannot be read or written. The message is
 * {@code "<file>: <what>"}, e.g. {@code "/x/model.safetensors: header length 99999 exceeds file
 * size 120"}.
 */
public class SafetensorsException extends IOException {
  private final transient Path file;

  /** A problem {@code what} with {@code file}. */
  public SafetensorsException(Path file, String what) {
    super(file + ": " + what);
    this.file = file;
  }

  /** A problem {@code what} with {@code file}, caused by {@code cause}. */
  public SafetensorsException(Path file, String what, Throwable cause) {
    super(file + ": " + what, cause);
    this.file = file;
  }

  /** The file or folder the problem is about. */
  public Path file() {
    return file;
  }
}
