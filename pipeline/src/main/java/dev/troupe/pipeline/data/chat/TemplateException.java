package dev.troupe.pipeline.data.chat;

/**
 * A chat template that cannot be parsed or rendered; the message names the template's origin and
 * the line and column.
 */
public final class TemplateException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  TemplateException(String message) {
    super(message);
  }
}
