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
 * @param chatTemplate for the chat format: the model's own chat template or Troupe's default
 */
public record DataSettings(
    Path train,
    Path eval,
    Format format,
    boolean shuffle,
    boolean skipMalformed,
    ChatTemplateChoice chatTemplate) {
  public DataSettings {
    Objects.requireNonNull(train, "train");
    Objects.requireNonNull(format, "format");
    Objects.requireNonNull(chatTemplate, "chatTemplate");
  }

  /** Data settings that use the model's chat template where it has one. */
  public DataSettings(
      Path train, Path eval, Format format, boolean shuffle, boolean skipMalformed) {
    this(train, eval, format, shuffle, skipMalformed, ChatTemplateChoice.MODEL);
  }

  /** Which chat template formats {@code chat} examples ({@code data.chat-template}). */
  public enum ChatTemplateChoice {
    /** The {@code chat_template} of the model's tokenizer_config.json; the default where none. */
    MODEL,
    /** Troupe's default chat format, whatever the model has. */
    DEFAULT
  }
}
