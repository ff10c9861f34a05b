package dev.troupe.pipeline.job;

import dev.troupe.pipeline.data.Format;
import java.nio.file.Path;
import java.util.Objects;

/**
 * The job's data ({@code data { ... }}).
 *
 * @param train the training JSONL file, as written in the job (relative to the working directory)
 * @param eval the evaluation JSONL file, or null for no evaluation
 * @param format how the lines are laid out
 * @param shuffle whether training examples are shuffled each epoch
 * @param skipMalformed true: malformed lines are skipped and counted; false: they fail the job
 */
public record DataSettings(
    Path train, Path eval, Format format, boolean shuffle, boolean skipMalformed) {
  public DataSettings {
    Objects.requireNonNull(train, "train");
    Objects.requireNonNull(format, "format");
  }
}
