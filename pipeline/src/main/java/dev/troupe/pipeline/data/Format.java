package dev.troupe.pipeline.data;

import java.util.Locale;

/**
 * The layout of one JSONL line; see {@link JsonlDataset} for the fields and how each format becomes
 * ids and labels.
 */
public enum Format {
  /** Stanford Alpaca records: {@code instruction}, optional {@code input}, {@code output}. */
  ALPACA,
  /** Conversations: {@code messages}, a list of {@code {role, content}} objects. */
  CHAT,
  /** Pre-tokenized records: {@code input_ids} and optional {@code labels}. */
  TOKENS;

  /**
   * The format named {@code name}, ignoring case and surrounding blanks: {@code alpaca}, {@code
   * chat} or {@code tokens}.
   *
   * @throws IllegalArgumentException for any other name
   */
  public static Format parse(String name) {
    if (name != null) {
      String wanted = name.strip().toUpperCase(Locale.ROOT);
      for (Format format : values()) {
        if (format.name().equals(wanted)) {
          return format;
        }
      }
    }
    throw new IllegalArgumentException(
        "unknown data format "
            + (name == null ? "null" : "\"" + name + "\"")
            + " (expected alpaca, chat or tokens)");
  }

  /** The lower-case name used in configuration files, such as {@code "alpaca"}. */
  @Override
  public String toString() {
    return name().toLowerCase(Locale.ROOT);
  }
}
