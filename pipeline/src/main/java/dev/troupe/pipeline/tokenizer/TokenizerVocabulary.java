package dev.troupe.pipeline.tokenizer;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.OptionalLong;

/**
 * Token-string to id table read from a {@code tokenizer.json} on the Java side, because DJL's
 * binding exposes neither the vocabulary size nor token-to-id lookup.
 *
 * <p>Covers the model vocab in both layouts Hugging Face uses ({@code {"token": id}} for
 * BPE/WordPiece/WordLevel, {@code [["piece", score], ...]} for Unigram) plus {@code added_tokens}.
 */
final class TokenizerVocabulary {

  private static final ObjectMapper MAPPER =
      new ObjectMapper(
          JsonFactory.builder()
              .streamReadConstraints(
                  StreamReadConstraints.builder()
                      .maxNameLength(1 << 20)
                      .maxStringLength(Integer.MAX_VALUE)
                      .build())
              .build());

  private final Map<String, Long> added;
  private final Map<String, Long> model;
  private final long size;

  private TokenizerVocabulary(Map<String, Long> added, Map<String, Long> model, long size) {
    this.added = added;
    this.model = model;
    this.size = size;
  }

  /** Parses the file; IOException naming it when it is not a tokenizer.json we understand. */
  static TokenizerVocabulary read(Path file, byte[] json) throws IOException {
    JsonNode root;
    try {
      root = MAPPER.readTree(json);
    } catch (JacksonException e) {
      throw new IOException(
          "tokenizer file " + file + " is not valid JSON: " + e.getOriginalMessage(), e);
    }
    if (root == null || !root.isObject()) {
      throw new IOException("tokenizer file " + file + " is not a JSON object");
    }
    JsonNode modelNode = root.get("model");
    if (modelNode == null || !modelNode.isObject()) {
      throw new IOException("tokenizer file " + file + " has no \"model\" object");
    }
    long maxId = -1;
    Map<String, Long> model = new HashMap<>();
    JsonNode vocab = modelNode.get("vocab");
    if (vocab != null && vocab.isObject()) {
      for (Map.Entry<String, JsonNode> e : vocab.properties()) {
        long id = requireId(file, e.getValue(), e.getKey());
        model.put(e.getKey(), id);
        maxId = Math.max(maxId, id);
      }
    } else if (vocab != null && vocab.isArray()) {
      for (int i = 0; i < vocab.size(); i++) {
        JsonNode piece = vocab.get(i);
        String token = piece.isArray() && piece.size() > 0 ? piece.get(0).asText() : null;
        if (token == null) {
          throw new IOException(
              "tokenizer file " + file + ": vocab entry " + i + " is not a [piece, score] pair");
        }
        model.putIfAbsent(token, (long) i);
        maxId = i;
      }
    } else {
      throw new IOException("tokenizer file " + file + " has no model vocab");
    }
    Map<String, Long> added = new HashMap<>();
    JsonNode addedTokens = root.get("added_tokens");
    if (addedTokens != null && addedTokens.isArray()) {
      for (JsonNode t : addedTokens) {
        JsonNode content = t.get("content");
        if (content == null || !content.isTextual()) {
          throw new IOException(
              "tokenizer file " + file + ": added token without \"content\": " + t);
        }
        long id = requireId(file, t.get("id"), content.asText());
        added.put(content.asText(), id);
        maxId = Math.max(maxId, id);
      }
    }
    return new TokenizerVocabulary(Map.copyOf(added), Map.copyOf(model), maxId + 1);
  }

  private static long requireId(Path file, JsonNode node, String token) throws IOException {
    if (node == null
        || !node.canConvertToLong()
        || !node.isIntegralNumber()
        || node.asLong() < 0
        || node.asLong() > 0xFFFF_FFFFL) {
      throw new IOException(
          "tokenizer file " + file + ": token " + quote(token) + " has invalid id " + node);
    }
    return node.asLong();
  }

  static String quote(String token) {
    return '"' + token.replace("\n", "\\n").replace("\"", "\\\"") + '"';
  }

  /** 1 + the highest id in the model vocab or added tokens. */
  long size() {
    return size;
  }

  OptionalLong idOf(String token) {
    Long id = added.get(token);
    if (id == null) {
      id = model.get(token);
    }
    return id == null ? OptionalLong.empty() : OptionalLong.of(id);
  }
}
