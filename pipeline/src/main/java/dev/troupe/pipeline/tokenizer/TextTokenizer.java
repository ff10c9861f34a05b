package dev.troupe.pipeline.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;
import java.util.OptionalLong;

/**
 * A Hugging Face {@code tokenizer.json} tokenizer (via DJL's Rust binding) that encodes text to
 * token ids and decodes ids back to text, exactly as the file describes and nothing more: no
 * special tokens are added implicitly (no BOS/EOS from the post-processor), no truncation, no
 * padding. Callers add {@code <s>}/{@code </s>} themselves, using {@link #tokenId(String)}.
 *
 * <p>Inputs are checked on the Java side before reaching native code: null text, malformed UTF-16
 * (an unpaired surrogate) and ids outside {@code [0, vocabSize())} give an {@link
 * IllegalArgumentException}. Text that contains a special token's literal content (such as {@code
 * "</s>"}) is encoded to that special token, as in Hugging Face.
 *
 * <p>Encoding and decoding may run on several threads at once; {@link #close()} must not race with
 * them. Before first use this class sets the system properties {@code OPT_OUT_TRACKING} and {@code
 * ai.djl.offline} to {@code true} unless already set (as property or environment variable), so that
 * DJL neither probes the EC2 metadata endpoint for telemetry nor tries to download its native
 * library; the library bundled in the DJL jar is extracted to DJL's cache ({@code $DJL_CACHE_DIR},
 * else {@code ~/.djl.ai}, under {@code tokenizers/}).
 */
public final class TextTokenizer implements AutoCloseable {

  /** The file name looked up inside a model folder. */
  public static final String FILE_NAME = "tokenizer.json";

  static {
    keepDjlOffline("OPT_OUT_TRACKING", "OPT_OUT_TRACKING");
    keepDjlOffline("ai.djl.offline", "DJL_OFFLINE");
  }

  private final Path file;
  private final TokenizerVocabulary vocabulary;
  private final HuggingFaceTokenizer tokenizer;
  private volatile boolean closed;

  private TextTokenizer(Path file, TokenizerVocabulary vocabulary, HuggingFaceTokenizer tokenizer) {
    this.file = file;
    this.vocabulary = vocabulary;
    this.tokenizer = tokenizer;
  }

  /**
   * Loads {@code modelFolder/tokenizer.json} ({@code modelFolder} may also be the file itself).
   *
   * @throws IOException naming the file when it is missing, unreadable, or not a tokenizer the
   *     Hugging Face tokenizers library accepts
   */
  public static TextTokenizer open(Path modelFolder) throws IOException {
    Objects.requireNonNull(modelFolder, "modelFolder");
    Path file = Files.isDirectory(modelFolder) ? modelFolder.resolve(FILE_NAME) : modelFolder;
    if (!Files.isRegularFile(file)) {
      throw new IOException("tokenizer file not found: " + file.toAbsolutePath());
    }
    byte[] json;
    try {
      json = Files.readAllBytes(file);
    } catch (IOException e) {
      throw new IOException("cannot read tokenizer file " + file.toAbsolutePath() + ": " + e, e);
    }
    TokenizerVocabulary vocabulary = TokenizerVocabulary.read(file.toAbsolutePath(), json);
    HuggingFaceTokenizer tokenizer;
    try {
      tokenizer =
          HuggingFaceTokenizer.builder()
              .optTokenizerPath(file)
              .optAddSpecialTokens(false)
              .optTruncation(false)
              .optPadding(false)
              .build();
    } catch (IOException | RuntimeException e) {
      // Rust-side parse errors arrive as RuntimeException ("data did not match any variant...").
      throw new IOException(
          "cannot load tokenizer file " + file.toAbsolutePath() + ": " + e.getMessage(), e);
    }
    return new TextTokenizer(file, vocabulary, tokenizer);
  }

  /** The {@code tokenizer.json} this tokenizer was loaded from. */
  public Path file() {
    return file;
  }

  /** Token ids of {@code text}, without any special tokens added; empty text gives no ids. */
  public long[] encode(String text) {
    Objects.requireNonNull(text, "text");
    requireWellFormed(text);
    if (text.isEmpty()) {
      return new long[0];
    }
    return live().encode(text, false, false).getIds();
  }

  /** Decodes {@code ids} to text, special tokens included. */
  public String decode(long[] ids) {
    return decode(ids, false);
  }

  /**
   * Decodes {@code ids} to text.
   *
   * @param skipSpecial whether special tokens (such as {@code </s>}) are left out of the text
   * @throws IllegalArgumentException naming the first id outside {@code [0, vocabSize())}
   */
  public String decode(long[] ids, boolean skipSpecial) {
    Objects.requireNonNull(ids, "ids");
    long size = vocabulary.size();
    for (int i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= size) {
        throw new IllegalArgumentException(
            "token id "
                + ids[i]
                + " at position "
                + i
                + " is out of range [0, "
                + size
                + ") of tokenizer "
                + file);
      }
    }
    if (ids.length == 0) {
      return "";
    }
    return live().decode(ids, skipSpecial);
  }

  /**
   * Number of token ids: one more than the highest id in the model vocabulary or among the added
   * tokens (the embedding matrix needs at least this many rows).
   */
  public int vocabSize() {
    return Math.toIntExact(vocabulary.size());
  }

  /**
   * The id of a whole token string such as {@code "</s>"} or {@code "Ġthe"}, if it is in the vocab.
   */
  public OptionalLong tokenId(String token) {
    return vocabulary.idOf(Objects.requireNonNull(token, "token"));
  }

  /** Frees the native tokenizer; idempotent. */
  @Override
  public void close() {
    if (!closed) {
      closed = true;
      tokenizer.close();
    }
  }

  private HuggingFaceTokenizer live() {
    if (closed) {
      throw new IllegalStateException("tokenizer " + file + " is closed");
    }
    return tokenizer;
  }

  private static void requireWellFormed(String text) {
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (Character.isHighSurrogate(c)
          && i + 1 < text.length()
          && Character.isLowSurrogate(text.charAt(i + 1))) {
        i++;
      } else if (Character.isSurrogate(c)) {
        throw new IllegalArgumentException(
            String.format("text has an unpaired surrogate U+%04X at index %d", (int) c, i));
      }
    }
  }

  private static void keepDjlOffline(String property, String envVar) {
    if (System.getProperty(property) == null && System.getenv(envVar) == null) {
      System.setProperty(property, "true");
    }
  }
}
