package dev.troupe.pipeline.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ByteLevelBpeTokenizerWriterTest {

  private static final List<String> SAMPLES =
      List.of(
          "Hello, world! The river town woke slowly.",
          "",
          " ",
          "  leading and trailing spaces  ",
          "line one\nline two\r\n\n\ttabbed\u00a0nbsp\u2003em-space",
          "café, naïve, Ærø, Straße",
          "漢字とかな、한국어, русский, العربية",
          "emoji 😀👩‍👩‍👧 🇫🇷 and ZWJ",
          "nul\u0000and control \u0001\u001f\u007f chars",
          "numbers 3.14159 2024-06-01 1e-9 0xFF",
          "</s> literal <s> text <unk>",
          "it's they're we've I'm you'll he'd");

  @TempDir Path dir;

  private Path writeDefault(int maxVocab) throws IOException {
    Path file = dir.resolve("tokenizer.json");
    ByteLevelBpeTokenizerWriter.write(
        file, maxVocab, ByteLevelBpeTokenizerWriter.defaultTrainingText());
    return file;
  }

  @Test
  void writtenTokenizerLoadsWithSpecialIds() throws IOException {
    writeDefault(32000);
    try (TextTokenizer tok = TextTokenizer.open(dir)) {
      assertEquals(OptionalLong.of(0), tok.tokenId("<unk>"));
      assertEquals(OptionalLong.of(1), tok.tokenId("<s>"));
      assertEquals(OptionalLong.of(2), tok.tokenId("</s>"));
      assertEquals(OptionalLong.of(3 + ' '), tok.tokenId("Ġ"), "space byte symbol");
      assertEquals(OptionalLong.of(3 + 'a'), tok.tokenId("a"));
      assertTrue(tok.tokenId("no such token").isEmpty());
      assertArrayEquals(new long[] {2}, tok.encode("</s>"));
      assertEquals("</s>", tok.decode(new long[] {2}));
      assertEquals("", tok.decode(new long[] {1, 2}, true));
    }
  }

  @Test
  void encodeDecodeRoundTripsArbitraryText() throws IOException {
    writeDefault(32000);
    try (TextTokenizer tok = TextTokenizer.open(dir)) {
      for (String text : SAMPLES) {
        long[] ids = tok.encode(text);
        assertEquals(text, tok.decode(ids), () -> "round trip of " + text);
        assertTrue(ids.length <= text.getBytes(StandardCharsets.UTF_8).length);
      }
      String all = String.join("\n", SAMPLES) + ByteLevelBpeTokenizerWriter.defaultTrainingText();
      assertEquals(all, tok.decode(tok.encode(all)));
    }
  }

  @Test
  void mergesMakeCommonWordsShorterThanTheirBytes() throws IOException {
    writeDefault(32000);
    try (TextTokenizer tok = TextTokenizer.open(dir)) {
      assertEquals(1, tok.encode(" the").length);
      assertTrue(tok.tokenId("Ġthe").isPresent());
      String sentence = "The teacher lent her books to the children of the town.";
      long[] ids = tok.encode(sentence);
      assertTrue(ids.length < sentence.length() / 2, () -> ids.length + " tokens");
      assertTrue(tok.vocabSize() > 400, "default text should give some hundred merges");
    }
  }

  @Test
  void vocabStaysWithinMaxVocab() throws IOException {
    String text = String.join(" ", SAMPLES) + ByteLevelBpeTokenizerWriter.defaultTrainingText();
    for (int maxVocab : new int[] {259, 260, 300, 512, 32000}) {
      Path file = dir.resolve(maxVocab + "/tokenizer.json");
      ByteLevelBpeTokenizerWriter.write(
          file, maxVocab, ByteLevelBpeTokenizerWriter.defaultTrainingText());
      JsonNode vocab = new ObjectMapper().readTree(file.toFile()).path("model").path("vocab");
      assertTrue(vocab.size() <= maxVocab, maxVocab + ": " + vocab.size());
      vocab.properties().forEach(e -> assertTrue(e.getValue().asInt() < maxVocab));
      try (TextTokenizer tok = TextTokenizer.open(file)) {
        assertEquals(vocab.size(), tok.vocabSize());
        if (maxVocab < 1000) {
          assertEquals(maxVocab, tok.vocabSize(), "enough repeated pairs to fill it");
        }
        for (long id : tok.encode(text)) {
          assertTrue(id >= 0 && id < maxVocab, "id " + id);
        }
        assertEquals(text, tok.decode(tok.encode(text)));
      }
    }
  }

  @Test
  void minimalVocabIsAPureByteTokenizer() throws IOException {
    Path file = writeDefault(259);
    JsonNode model = new ObjectMapper().readTree(file.toFile()).path("model");
    assertEquals(0, model.path("merges").size());
    try (TextTokenizer tok = TextTokenizer.open(dir)) {
      assertEquals(259, tok.vocabSize());
      String text = "the é 漢 😀\n";
      byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
      long[] ids = tok.encode(text);
      assertEquals(bytes.length, ids.length);
      for (int i = 0; i < bytes.length; i++) {
        assertEquals(3 + (bytes[i] & 0xFF), ids[i]);
      }
      assertEquals(text, tok.decode(ids));
    }
  }

  @Test
  void writesTheExpectedJsonShape() throws IOException {
    Path file = writeDefault(600);
    JsonNode root = new ObjectMapper().readTree(file.toFile());
    assertEquals("1.0", root.path("version").asText());
    assertTrue(root.path("normalizer").isNull());
    assertEquals("ByteLevel", root.path("pre_tokenizer").path("type").asText());
    assertFalse(root.path("pre_tokenizer").path("add_prefix_space").asBoolean());
    assertTrue(root.path("pre_tokenizer").path("use_regex").asBoolean());
    assertEquals("ByteLevel", root.path("decoder").path("type").asText());
    JsonNode added = root.path("added_tokens");
    assertEquals(3, added.size());
    for (int id = 0; id < 3; id++) {
      assertEquals(id, added.get(id).path("id").asInt());
      assertTrue(added.get(id).path("special").asBoolean());
    }
    JsonNode model = root.path("model");
    assertEquals("BPE", model.path("type").asText());
    assertTrue(model.path("merges").size() > 0);
    for (JsonNode merge : model.path("merges")) {
      String[] parts = merge.asText().split(" ");
      assertEquals(2, parts.length, merge.asText());
      assertTrue(model.path("vocab").has(parts[0] + parts[1]), merge.asText());
    }
    try (Stream<Path> files = Files.list(dir)) {
      assertEquals(List.of(file), files.toList(), "only tokenizer.json, no temp files");
    }
  }

  @Test
  void writesAreDeterministicAndOverwrite() throws IOException {
    Path a = dir.resolve("a.json");
    Path b = dir.resolve("b.json");
    String text = ByteLevelBpeTokenizerWriter.defaultTrainingText();
    ByteLevelBpeTokenizerWriter.write(a, 32000, text);
    ByteLevelBpeTokenizerWriter.write(b, 32000, text);
    assertArrayEquals(Files.readAllBytes(a), Files.readAllBytes(b));
    ByteLevelBpeTokenizerWriter.write(b, 259, text);
    assertTrue(Files.size(b) < Files.size(a), "overwritten with the smaller tokenizer");
  }

  @Test
  void mergesMostFrequentPairFirstAndBreaksTiesByTokenStrings() throws IOException {
    // Pairs: (c,d)=3, then (Ġ,cd), (Ġ,a), (a,b) tie at 2 and "a" sorts before "Ġ".
    // Training stops when no pair occurs twice: in "here repeats" only (r,e) does.
    Path file = dir.resolve("tokenizer.json");
    ByteLevelBpeTokenizerWriter.write(file, 261, "cd cd cd ab ab");
    JsonNode merges = new ObjectMapper().readTree(file.toFile()).path("model").path("merges");
    assertEquals(List.of("c d", "a b"), merges.valueStream().map(JsonNode::asText).toList());
    ByteLevelBpeTokenizerWriter.write(file, 32000, "here repeats");
    merges = new ObjectMapper().readTree(file.toFile()).path("model").path("merges");
    assertEquals(List.of("r e"), merges.valueStream().map(JsonNode::asText).toList());
  }

  @Test
  void largeVocabTrainingIsFast() throws IOException {
    String text = ByteLevelBpeTokenizerWriter.defaultTrainingText();
    assertTrue(text.length() > 3000, "a few KB of training text");
    ByteLevelBpeTokenizerWriter.write(dir.resolve("warmup.json"), 32000, text);
    long start = System.nanoTime();
    ByteLevelBpeTokenizerWriter.write(dir.resolve("tokenizer.json"), 32000, text);
    long millis = (System.nanoTime() - start) / 1_000_000;
    assertTrue(millis < 1000, millis + " ms");
    // Degenerate text: long runs stop at the token length cap instead of growing forever.
    ByteLevelBpeTokenizerWriter.write(dir.resolve("runs.json"), 32000, "a".repeat(100_000));
    try (TextTokenizer tok = TextTokenizer.open(dir.resolve("runs.json"))) {
      assertEquals("a".repeat(1000), tok.decode(tok.encode("a".repeat(1000))));
    }
  }

  @Test
  void rejectsTooSmallVocab() {
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () -> ByteLevelBpeTokenizerWriter.write(dir.resolve("t.json"), 258, "text"));
    assertTrue(e.getMessage().contains("258"), e.getMessage());
    assertFalse(Files.exists(dir.resolve("t.json")));
  }
}
