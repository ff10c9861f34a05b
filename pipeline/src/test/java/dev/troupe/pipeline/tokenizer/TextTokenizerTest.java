package dev.troupe.pipeline.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TextTokenizerTest {

  /**
   * A tiny LLaMA/SentencePiece-style BPE: Metaspace pre-tokenizer and decoder, an unk token, and
   * the LLaMA post-processor that prepends {@code <s>} (which must NOT be applied). Merges, by
   * priority: l+l, ▁+H, e+ll, ▁H+ell, o+r, ▁+w, ▁w+or. So "▁Hello" becomes ▁Hell(14) o(7) and
   * "▁world" becomes ▁wor(17) l(6) d(10).
   */
  private static final String LLAMA_STYLE =
      """
      {
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
          {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": true},
          {"id": 1, "content": "<s>", "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": true},
          {"id": 2, "content": "</s>", "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁",
                          "prepend_scheme": "always", "split": true},
        "post_processor": {
          "type": "TemplateProcessing",
          "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}}],
          "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "<s>", "type_id": 1}},
                   {"Sequence": {"id": "B", "type_id": 1}}],
          "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        },
        "decoder": {"type": "Metaspace", "replacement": "▁",
                    "prepend_scheme": "always", "split": true},
        "model": {
          "type": "BPE", "dropout": null, "unk_token": "<unk>",
          "continuing_subword_prefix": null, "end_of_word_suffix": null,
          "fuse_unk": true, "byte_fallback": false,
          "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "H": 4, "e": 5, "l": 6,
                    "o": 7, "w": 8, "r": 9, "d": 10, "ll": 11, "▁H": 12, "ell": 13,
                    "▁Hell": 14, "or": 15, "▁w": 16, "▁wor": 17},
          "merges": ["l l", "▁ H", "e ll", "▁H ell", "o r", "▁ w", "▁w or"]
        }
      }
      """;

  @TempDir Path dir;

  @Test
  void readsLlamaStyleMetaspaceTokenizer() throws IOException {
    Files.writeString(dir.resolve("tokenizer.json"), LLAMA_STYLE);
    try (TextTokenizer tok = TextTokenizer.open(dir)) {
      long[] ids = tok.encode("Hello world");
      assertArrayEquals(new long[] {14, 7, 17, 6, 10}, ids, "no <s> prepended either");
      assertEquals("Hello world", tok.decode(ids));
      assertArrayEquals(new long[] {1, 14, 7, 2}, tok.encode("<s>Hello</s>"));
      assertEquals("Hello", tok.decode(new long[] {1, 14, 7, 2}, true));
      assertArrayEquals(new long[] {3, 0}, tok.encode("Z"), "unknown char -> <unk>");
      assertEquals(18, tok.vocabSize());
      assertEquals(OptionalLong.of(2), tok.tokenId("</s>"));
      assertEquals(OptionalLong.of(14), tok.tokenId("▁Hell"));
      assertArrayEquals(new long[0], tok.encode(""));
      assertEquals("", tok.decode(new long[0]));
    }
  }

  @Test
  void opensTheFileDirectlyToo() throws IOException {
    Path file = dir.resolve("custom-name.json");
    Files.writeString(file, LLAMA_STYLE);
    try (TextTokenizer tok = TextTokenizer.open(file)) {
      assertEquals(file, tok.file());
      assertArrayEquals(new long[] {14, 7}, tok.encode("Hello"));
    }
  }

  @Test
  void missingTokenizerNamesThePath() {
    IOException e = assertThrows(IOException.class, () -> TextTokenizer.open(dir));
    assertTrue(e.getMessage().contains(dir.resolve("tokenizer.json").toString()), e.getMessage());
  }

  @Test
  void corruptJsonNamesThePath() throws IOException {
    Path file = dir.resolve("tokenizer.json");
    Files.writeString(file, "{\"version\": \"1.0\", \"model\": {\"vocab\": {\"a\": 0,");
    IOException e = assertThrows(IOException.class, () -> TextTokenizer.open(dir));
    assertTrue(e.getMessage().contains(file.toString()), e.getMessage());
  }

  @Test
  void jsonTheNativeLibraryRejectsNamesThePath() throws IOException {
    Path file = dir.resolve("tokenizer.json");
    Files.writeString(file, "{\"model\": {\"type\": \"NoSuchModel\", \"vocab\": {\"a\": 0}}}");
    IOException e = assertThrows(IOException.class, () -> TextTokenizer.open(dir));
    assertTrue(e.getMessage().contains(file.toString()), e.getMessage());
    Files.writeString(file, "[1, 2, 3]");
    e = assertThrows(IOException.class, () -> TextTokenizer.open(dir));
    assertTrue(e.getMessage().contains(file.toString()), e.getMessage());
  }

  @Test
  void outOfRangeIdsAreRejectedBeforeNativeCode() throws IOException {
    ByteLevelBpeTokenizerWriter.write(dir.resolve("tokenizer.json"), 300, "the the the the");
    try (TextTokenizer tok = TextTokenizer.open(dir)) {
      int size = tok.vocabSize();
      for (long bad : new long[] {size, -1, 4_294_967_296L + 40, Long.MAX_VALUE}) {
        IllegalArgumentException e =
            assertThrows(IllegalArgumentException.class, () -> tok.decode(new long[] {40, bad}));
        assertTrue(e.getMessage().contains("token id " + bad), e.getMessage());
      }
      assertEquals("%", tok.decode(new long[] {3 + '%'}));
    }
  }

  @Test
  void oddTextIsHandledOrRejectedClearly() throws IOException {
    ByteLevelBpeTokenizerWriter.write(dir.resolve("tokenizer.json"), 259, "");
    try (TextTokenizer tok = TextTokenizer.open(dir)) {
      assertArrayEquals(new long[] {3 + 'a', 3, 3 + 'b'}, tok.encode("a\u0000b"));
      IllegalArgumentException e =
          assertThrows(IllegalArgumentException.class, () -> tok.encode("lone \uD800 surrogate"));
      assertTrue(e.getMessage().contains("index 5"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> tok.encode("\uDC00"));
      assertThrows(NullPointerException.class, () -> tok.encode(null));
      String big = "x\n".repeat(200_000);
      assertEquals(big, tok.decode(tok.encode(big)));
    }
  }

  @Test
  void closedTokenizerFailsCleanlyAndCloseIsIdempotent() throws IOException {
    ByteLevelBpeTokenizerWriter.write(dir.resolve("tokenizer.json"), 259, "");
    TextTokenizer tok = TextTokenizer.open(dir);
    tok.close();
    tok.close();
    assertThrows(IllegalStateException.class, () -> tok.encode("x"));
    assertThrows(IllegalStateException.class, () -> tok.decode(new long[] {5}));
  }
}
