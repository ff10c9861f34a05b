package dev.troupe.pipeline.data;

import dev.troupe.pipeline.data.chat.ChatTemplate;
import dev.troupe.pipeline.tokenizer.TextTokenizer;

/**
 * How text becomes tokens: the tokenizer ({@code null} allowed only for {@link Format#TOKENS}), the
 * bos id ({@code -1} = none) put first, the eos id appended after the response / each assistant
 * turn ({@code -1} = none; for {@link Format#TOKENS} neither is added), and the model's chat
 * template for {@link Format#CHAT} ({@code null}: Troupe's default chat format). A chat template
 * writes its own special tokens, so with one neither bos nor eos is added to chat examples.
 */
public record TextEncoding(
    TextTokenizer tokenizer, long bosId, long eosId, ChatTemplate chatTemplate) {

  /**
   * Checks the ids.
   *
   * @throws IllegalArgumentException if an id is below {@code -1}, or not below the tokenizer's
   *     vocabulary size
   */
  public TextEncoding {
    checkId("bosId", bosId, tokenizer);
    checkId("eosId", eosId, tokenizer);
  }

  /** An encoding with Troupe's default chat format. */
  public TextEncoding(TextTokenizer tokenizer, long bosId, long eosId) {
    this(tokenizer, bosId, eosId, null);
  }

  /** An encoding without tokenizer and special tokens, enough for {@link Format#TOKENS}. */
  public static TextEncoding none() {
    return new TextEncoding(null, -1, -1);
  }

  private static void checkId(String name, long id, TextTokenizer tokenizer) {
    if (id < -1 || (tokenizer != null && id >= tokenizer.vocabSize())) {
      throw new IllegalArgumentException(
          name
              + " "
              + id
              + " must be -1 (none) or a token id"
              + (tokenizer == null ? "" : " below the vocabulary size " + tokenizer.vocabSize()));
    }
  }
}
