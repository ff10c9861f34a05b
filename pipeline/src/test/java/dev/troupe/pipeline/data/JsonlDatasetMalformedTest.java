package dev.troupe.pipeline.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class JsonlDatasetMalformedTest {
  private static final String GOOD_ALPACA = "{\"instruction\": \"a\", \"output\": \"b\"}";

  @TempDir static Path tokenizerDir;
  @TempDir Path dir;
  private static TextTokenizer tok;

  @BeforeAll
  static void openTokenizer() throws IOException {
    tok = TestTokenizer.open(tokenizerDir);
  }

  @AfterAll
  static void closeTokenizer() {
    tok.close();
  }

  /** Format, bad line, and the expected problem; a trailing "..." means "starts with". */
  static Stream<Arguments> badLines() {
    return Stream.of(
        Arguments.of(Format.ALPACA, "not json", "not valid JSON: ..."),
        Arguments.of(Format.ALPACA, "{\"instruction\": \"a\",", "not valid JSON: ..."),
        Arguments.of(Format.ALPACA, GOOD_ALPACA + " {}", "not valid JSON: more text after ..."),
        Arguments.of(
            Format.ALPACA,
            "{\"instruction\": \"a\", \"output\": \"b\", \"output\": \"c\"}",
            "not valid JSON: Duplicate field 'output'..."),
        Arguments.of(Format.ALPACA, "[1, 2]", "not a JSON object: [1,2]"),
        Arguments.of(Format.ALPACA, "\"text\"", "not a JSON object: \"text\""),
        Arguments.of(Format.ALPACA, "{\"instruction\": \"a\"}", "missing string field \"output\""),
        Arguments.of(Format.ALPACA, "{\"output\": \"a\"}", "missing string field \"instruction\""),
        Arguments.of(
            Format.ALPACA,
            "{\"instruction\": \"a\", \"output\": null}",
            "missing string field \"output\""),
        Arguments.of(
            Format.ALPACA,
            "{\"instruction\": \"a\", \"output\": 5}",
            "field \"output\" must be a string, got 5"),
        Arguments.of(
            Format.ALPACA,
            "{\"instruction\": \"a\", \"input\": [1], \"output\": \"b\"}",
            "field \"input\" must be a string, got [1]"),
        Arguments.of(
            Format.ALPACA,
            "{\"instruction\": \"a\", \"output\": \"x\\ud800\"}",
            "field \"output\": text has an unpaired surrogate U+D800 at index 1"),
        Arguments.of(Format.CHAT, "{}", "missing array field \"messages\""),
        Arguments.of(
            Format.CHAT,
            "{\"messages\": \"hi\"}",
            "field \"messages\" must be an array, got \"hi\""),
        Arguments.of(Format.CHAT, "{\"messages\": []}", "no assistant message in \"messages\""),
        Arguments.of(
            Format.CHAT,
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
            "no assistant message in \"messages\""),
        Arguments.of(Format.CHAT, "{\"messages\": [5]}", "messages[0] is not an object: 5"),
        Arguments.of(
            Format.CHAT,
            "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"},"
                + " {\"role\": \"tool\", \"content\": \"x\"}]}",
            "messages[1]: unknown role \"tool\" (expected system, user or assistant)"),
        Arguments.of(
            Format.CHAT,
            "{\"messages\": [{\"role\": \"assistant\"}]}",
            "messages[0]: missing string field \"content\""),
        Arguments.of(
            Format.CHAT,
            "{\"messages\": [{\"content\": \"x\"}]}",
            "messages[0]: missing string field \"role\""),
        Arguments.of(
            Format.CHAT,
            "{\"messages\": [{\"role\": \"user\", \"content\": 1}]}",
            "messages[0]: field \"content\" must be a string, got 1"),
        Arguments.of(Format.TOKENS, "{}", "missing array field \"input_ids\""),
        Arguments.of(
            Format.TOKENS,
            "{\"input_ids\": \"1 2\"}",
            "field \"input_ids\" must be an array of integers, got \"1 2\""),
        Arguments.of(Format.TOKENS, "{\"input_ids\": []}", "field \"input_ids\" is empty"),
        Arguments.of(
            Format.TOKENS,
            "{\"input_ids\": [1, 2.5]}",
            "input_ids[1] is not an integer token id: 2.5"),
        Arguments.of(
            Format.TOKENS,
            "{\"input_ids\": [1, \"2\"]}",
            "input_ids[1] is not an integer token id: \"2\""),
        Arguments.of(
            Format.TOKENS,
            "{\"input_ids\": [99999999999999999999]}",
            "input_ids[0] is not an integer token id: 99999999999999999999"),
        Arguments.of(
            Format.TOKENS, "{\"input_ids\": [1, -1]}", "input_ids[1] = -1 is not a token id"),
        Arguments.of(
            Format.TOKENS, "{\"input_ids\": [-100]}", "input_ids[0] = -100 is not a token id"),
        Arguments.of(
            Format.TOKENS,
            "{\"input_ids\": [1, 2], \"labels\": [2]}",
            "field \"labels\" has length 1 but \"input_ids\" has length 2"),
        Arguments.of(
            Format.TOKENS,
            "{\"input_ids\": [1, 2], \"labels\": [-5, 2]}",
            "labels[0] = -5 is not a token id or -100"),
        Arguments.of(
            Format.TOKENS,
            "{\"input_ids\": [1, 100000]}",
            "input_ids[1] = 100000 is not below the tokenizer's vocabulary size ..."));
  }

  @ParameterizedTest
  @MethodSource("badLines")
  void malformedLineNamesFileLineAndProblem(Format format, String bad, String what)
      throws IOException {
    Path file = TestTokenizer.jsonl(dir, "train.jsonl", good(format), "", bad, good(format));
    TextEncoding encoding = new TextEncoding(tok, 1, 2);
    DataFormatException e =
        assertThrows(
            DataFormatException.class, () -> JsonlDataset.load(file, format, encoding, 64, false));
    String prefix = file + ":3: ";
    if (what.endsWith("...")) {
      String start = prefix + what.substring(0, what.length() - 3);
      assertTrue(e.getMessage().startsWith(start), e.getMessage());
    } else {
      assertEquals(prefix + what, e.getMessage());
    }
    assertEquals(file, e.file());
    assertEquals(3, e.line());
    assertEquals(e.getMessage(), prefix + e.what());

    JsonlDataset skipping = JsonlDataset.load(file, format, encoding, 64, true);
    assertEquals(2, skipping.size());
    assertEquals(1, skipping.skipped());
    assertEquals(List.of(e.getMessage()), skipping.skippedProblems());
  }

  private static String good(Format format) {
    return switch (format) {
      case ALPACA -> GOOD_ALPACA;
      case CHAT -> "{\"messages\": [{\"role\": \"assistant\", \"content\": \"hi\"}]}";
      case TOKENS -> "{\"input_ids\": [3, 4]}";
    };
  }

  @Test
  void fileNameIsReportedAsGiven() throws IOException {
    Path file = TestTokenizer.jsonl(dir, "train.jsonl", "{\"input_ids\": [1]}", "{}");
    Path relative = Path.of("").toAbsolutePath().relativize(file);
    DataFormatException e =
        assertThrows(
            DataFormatException.class,
            () -> JsonlDataset.load(relative, Format.TOKENS, TextEncoding.none(), 8, false));
    assertEquals(relative + ":2: missing array field \"input_ids\"", e.getMessage());
  }

  @Test
  void invalidUtf8IsAMalformedLine() throws IOException {
    Path file = dir.resolve("bytes.jsonl");
    byte[] bad =
        "{\"input_ids\": [7]}\n{\"x\": \"\u00ff\"}\n{\"input_ids\": [8]}\n"
            .getBytes(StandardCharsets.ISO_8859_1);
    Files.write(file, bad);
    DataFormatException e =
        assertThrows(
            DataFormatException.class,
            () -> JsonlDataset.load(file, Format.TOKENS, TextEncoding.none(), 8, false));
    assertEquals(file + ":2: not valid UTF-8", e.getMessage());
    JsonlDataset data = JsonlDataset.load(file, Format.TOKENS, TextEncoding.none(), 8, true);
    assertEquals(1, data.skipped());
    assertArrayEquals(new long[] {8}, data.get(1).inputIds());
  }

  @Test
  void skipAndCountManyLines() throws IOException {
    String[] lines = new String[60];
    for (int i = 0; i < lines.length; i++) {
      lines[i] = i % 2 == 0 ? "{\"input_ids\": [" + i + "]}" : "oops " + i;
    }
    Path file = TestTokenizer.jsonl(dir, "mixed.jsonl", lines);
    JsonlDataset data = JsonlDataset.load(file, Format.TOKENS, TextEncoding.none(), 8, true);
    assertEquals(30, data.size());
    assertEquals(30, data.skipped());
    assertEquals(20, data.skippedProblems().size(), "only the first 20 messages are kept");
    assertTrue(data.skippedProblems().get(0).startsWith(file + ":2: not valid JSON"));
    for (int i = 0; i < 30; i++) {
      assertArrayEquals(new long[] {2 * i}, data.get(i).inputIds());
    }
  }
}
