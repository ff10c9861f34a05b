package dev.troupe.pipeline.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.troupe.pipeline.io.AtomicFile;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * Writes a Hugging Face {@code tokenizer.json} for a byte-level BPE tokenizer (GPT-2 / LLaMA-3
 * style) trained on a small text, for randomly initialised test and demo models.
 *
 * <p>Ids: {@code <unk>}=0, {@code <s>}=1, {@code </s>}=2 (special added tokens), then the 256 byte
 * symbols of GPT-2's bytes_to_unicode at {@code 3 + byte}, then one id per learned merge. Any text
 * round-trips exactly through such a tokenizer, since every byte has a token. Output is
 * deterministic: the same arguments give the same file, byte for byte.
 */
public final class ByteLevelBpeTokenizerWriter {

  /** Id of {@code <unk>}, kept in the vocab although byte-level BPE never needs it. */
  public static final int UNK_ID = 0;

  /** Id of the begin-of-sequence token {@code <s>}. */
  public static final int BOS_ID = 1;

  /** Id of the end-of-sequence token {@code </s>}. */
  public static final int EOS_ID = 2;

  /** Id of byte 0x00; byte {@code b} has id {@code FIRST_BYTE_ID + b}. */
  public static final int FIRST_BYTE_ID = 3;

  /** The smallest vocabulary: 3 specials and 256 bytes. */
  public static final int MIN_VOCAB = FIRST_BYTE_ID + 256;

  private static final List<String> SPECIALS = List.of("<unk>", "<s>", "</s>");
  private static final String TRAINING_TEXT = "training-text.txt";
  private static final ObjectMapper MAPPER =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private ByteLevelBpeTokenizerWriter() {}

  /**
   * Trains merges on {@code trainingText} and writes the tokenizer to {@code file} atomically (temp
   * file in the same folder, then rename); parent folders are created.
   *
   * @param maxVocab upper bound on the vocabulary size, at least {@link #MIN_VOCAB}; fewer ids are
   *     used when the text runs out of pairs occurring at least twice
   * @param trainingText text to learn merges from (only its first 256K chars are used)
   * @throws IllegalArgumentException if {@code maxVocab < 259}
   */
  public static void write(Path file, int maxVocab, String trainingText) throws IOException {
    Objects.requireNonNull(file, "file");
    Objects.requireNonNull(trainingText, "trainingText");
    if (maxVocab < MIN_VOCAB) {
      throw new IllegalArgumentException(
          "maxVocab must be at least "
              + MIN_VOCAB
              + " (3 special tokens + 256 bytes), got "
              + maxVocab);
    }
    List<BpeMergeLearner.Merge> merges =
        BpeMergeLearner.learn(trainingText, maxVocab - MIN_VOCAB, Set.copyOf(SPECIALS));
    byte[] json = MAPPER.writeValueAsBytes(tokenizerJson(merges));
    writeAtomically(file.toAbsolutePath(), json);
  }

  /** A few KB of plain English prose, enough for demo tokenizers to learn multi-byte merges. */
  public static String defaultTrainingText() {
    try (InputStream in = ByteLevelBpeTokenizerWriter.class.getResourceAsStream(TRAINING_TEXT)) {
      if (in == null) {
        throw new IllegalStateException(
            "resource "
                + TRAINING_TEXT
                + " is missing next to "
                + ByteLevelBpeTokenizerWriter.class.getName());
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read resource " + TRAINING_TEXT, e);
    }
  }

  private static ObjectNode tokenizerJson(List<BpeMergeLearner.Merge> merges) {
    JsonNodeFactory f = JsonNodeFactory.instance;
    ObjectNode root = f.objectNode();
    root.put("version", "1.0");
    root.putNull("truncation");
    root.putNull("padding");
    ArrayNode added = root.putArray("added_tokens");
    for (int id = 0; id < SPECIALS.size(); id++) {
      added
          .addObject()
          .put("id", id)
          .put("content", SPECIALS.get(id))
          .put("single_word", false)
          .put("lstrip", false)
          .put("rstrip", false)
          .put("normalized", false)
          .put("special", true);
    }
    root.putNull("normalizer");
    root.set("pre_tokenizer", byteLevel(f));
    root.putNull("post_processor");
    root.set("decoder", byteLevel(f));
    ObjectNode model = root.putObject("model");
    model.put("type", "BPE");
    model.putNull("dropout");
    model.putNull("unk_token");
    model.putNull("continuing_subword_prefix");
    model.putNull("end_of_word_suffix");
    model.put("fuse_unk", false);
    model.put("byte_fallback", false);
    model.put("ignore_merges", false);
    ObjectNode vocab = model.putObject("vocab");
    int nextId = 0;
    for (String special : SPECIALS) {
      vocab.put(special, nextId++);
    }
    for (String symbol : BpeMergeLearner.BYTE_SYMBOLS) {
      vocab.put(symbol, nextId++);
    }
    ArrayNode mergeList = model.putArray("merges");
    for (BpeMergeLearner.Merge merge : merges) {
      mergeList.add(merge.left() + " " + merge.right());
      if (!vocab.has(merge.joined())) {
        vocab.put(merge.joined(), nextId++);
      }
    }
    return root;
  }

  private static ObjectNode byteLevel(JsonNodeFactory f) {
    ObjectNode node = f.objectNode();
    node.put("type", "ByteLevel");
    node.put("add_prefix_space", false);
    node.put("trim_offsets", true);
    node.put("use_regex", true);
    return node;
  }

  private static void writeAtomically(Path file, byte[] bytes) throws IOException {
    Path dir = file.toAbsolutePath().getParent();
    if (dir != null) {
      Files.createDirectories(dir);
    }
    AtomicFile.write(file, bytes);
  }
}
