package dev.troupe.pipeline.safetensors;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/** The strict JSON handling shared by headers and shard indexes. */
final class Json {
  /** Fails on duplicate keys and on anything after the top-level value except whitespace. */
  static final ObjectMapper MAPPER =
      new ObjectMapper(new JsonFactory().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION))
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
          .enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY);

  private Json() {}

  /**
   * Decodes strict UTF-8 and parses one JSON object.
   *
   * @param what what the bytes are, for messages ("header", "index")
   */
  static ObjectNode parseObject(Path file, String what, byte[] bytes) throws SafetensorsException {
    String text;
    try {
      text =
          StandardCharsets.UTF_8
              .newDecoder()
              .onMalformedInput(CodingErrorAction.REPORT)
              .onUnmappableCharacter(CodingErrorAction.REPORT)
              .decode(ByteBuffer.wrap(bytes))
              .toString();
    } catch (CharacterCodingException e) {
      throw new SafetensorsException(file, what + " is not valid UTF-8", e);
    }
    if (text.isBlank()) {
      throw new SafetensorsException(file, what + " is empty; expected a JSON object");
    }
    JsonNode root;
    try {
      root = MAPPER.readTree(text);
    } catch (JsonProcessingException e) {
      String at =
          e.getLocation() == null
              ? ""
              : " (line "
                  + e.getLocation().getLineNr()
                  + ", column "
                  + e.getLocation().getColumnNr()
                  + ")";
      throw new SafetensorsException(
          file, what + " is not valid JSON: " + e.getOriginalMessage() + at, e);
    }
    if (!(root instanceof ObjectNode obj)) {
      String kind =
          root == null
              ? "nothing"
              : root.getNodeType().toString().toLowerCase(java.util.Locale.ROOT);
      throw new SafetensorsException(file, what + " is not a JSON object (found " + kind + ")");
    }
    return obj;
  }

  /** A short description of a node for messages, cut if long. */
  static String show(JsonNode node) {
    String s = node == null ? "nothing" : node.toString();
    return s.length() > 60 ? s.substring(0, 57) + "..." : s;
  }
}
