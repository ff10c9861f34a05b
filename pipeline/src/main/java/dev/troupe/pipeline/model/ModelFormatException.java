package dev.troupe.pipeline.model;

import java.io.IOException;
import java.nio.file.Path;

/** A model or adapter folder that cannot be used: the message names the file and the problem. */
public class ModelFormatException extends IOException {
  private final transient Path file;

  public ModelFormatException(Path file, String what) {
    super(file + ": " + what);
    this.file = file;
  }

  public Path file() {
    return file;
  }
}
