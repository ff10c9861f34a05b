package dev.troupe.pipeline.data;

import static dev.troupe.pipeline.data.TestTokenizer.BOS;
import static dev.troupe.pipeline.data.TestTokenizer.EOS;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.data.chat.ChatTemplate;
import dev.troupe.pipeline.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.stream.LongStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class JsonlDatasetTest {
  private static final String WITH_INPUT =
      "Below is an instruction that describes a task, paired with an input that provides further"
          + " context. Write a response that appropriately completes the request.\n\n"
          + "### Instruction:\nSummarize the text.\n\n### Input:\nThe river town woke slowly."
          + "\n\n### Response:\n";
  private static final String WITHOUT_INPUT =
      "Below is an instruction that describes a task. Write a response that appropriately"
          + " completes the request.\n\n### Instruction:\nSay hello.\n\n### Response:\n";

  @TempDir static Path tokenizerDir;
  @TempDir Path dir;
  private static TextTokenizer tok;
  private static TextEncoding encoding;

  @BeforeAll
  static void openTokenizer() throws IOException {
    tok = TestTokenizer.open(tokenizerDir);
    encoding = new TextEncoding(tok, BOS, EOS);
  }

  @AfterAll
  static void closeTokenizer() {
    tok.close();
  }

  /** Concatenates id arrays. */
  private static long[] cat(long[]... parts) {
    return Arrays.stream(parts).flatMapToLong(LongStream::of).toArray();
  }

  private static long[] masked(long[] ids) {
    long[] labels = new long[ids.length];
    Arrays.fill(labels, Example.IGNORE);
    return labels;
  }

  private static long[] one(long id) {
    return new long[] {id};
  }

  @Test
  void alpacaWithInputLabelsExactlyOutputAndEos() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir,
            "a.jsonl",
            "{\"instruction\": \"Summarize the text.\", \"input\": \"The river town woke"
                + " slowly.\", \"output\": \"A town wakes up.\", \"extra\": 1}");
    JsonlDataset data = JsonlDataset.load(file, Format.ALPACA, encoding, 1024, false);
    assertEquals(1, data.size());
    Example ex = data.get(0);
    long[] prompt = cat(one(BOS), tok.encode(WITH_INPUT));
    long[] response = cat(tok.encode("A town wakes up."), one(EOS));
    assertArrayEquals(cat(prompt, response), ex.inputIds());
    assertArrayEquals(cat(masked(prompt), response), ex.labels());
    assertEquals("<s>" + WITH_INPUT + "A town wakes up.</s>", tok.decode(ex.inputIds()));
    assertEquals(response.length, ex.labelCount());
    assertArrayEquals(prompt, data.promptIds(0));
    assertEquals("A town wakes up.", data.reference(0));
    assertEquals(file, data.file());
    assertEquals(0, data.skipped());
  }

  @Test
  void alpacaWithoutInputUsesShortTemplate() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir,
            "a.jsonl",
            "{\"instruction\": \"Say hello.\", \"output\": \"Hello.\"}",
            "{\"instruction\": \"Say hello.\", \"input\": \"\", \"output\": \"Hello.\"}",
            "{\"instruction\": \"Say hello.\", \"input\": null, \"output\": \"Hello.\"}");
    JsonlDataset data = JsonlDataset.load(file, Format.ALPACA, encoding, 1024, false);
    assertEquals(3, data.size());
    long[] prompt = cat(one(BOS), tok.encode(WITHOUT_INPUT));
    long[] response = cat(tok.encode("Hello."), one(EOS));
    for (int i = 0; i < 3; i++) {
      assertEquals(new Example(cat(prompt, response), cat(masked(prompt), response)), data.get(i));
    }
    assertEquals("<s>" + WITHOUT_INPUT + "Hello.</s>", tok.decode(data.get(0).inputIds()));
  }

  @Test
  void chatLabelsOnlyAssistantContentsAndTheirEos() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir,
            "c.jsonl",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                + " {\"role\": \"user\", \"content\": \"Hi there\"},"
                + " {\"role\": \"assistant\", \"content\": \"Hello!\"},"
                + " {\"role\": \"user\", \"content\": \"Bye\"},"
                + " {\"role\": \"assistant\", \"content\": \"Goodbye, friend.\"}]}");
    JsonlDataset data = JsonlDataset.load(file, Format.CHAT, encoding, 1024, false);
    Example ex = data.get(0);
    long[] first = tok.encode("<|system|>\nBe brief.\n<|user|>\nHi there\n<|assistant|>\n");
    long[] answer1 = cat(tok.encode("Hello!"), one(EOS));
    long[] second = tok.encode("<|user|>\nBye\n<|assistant|>\n");
    long[] answer2 = cat(tok.encode("Goodbye, friend."), one(EOS));
    assertArrayEquals(cat(one(BOS), first, answer1, second, answer2), ex.inputIds());
    assertArrayEquals(
        cat(masked(one(BOS)), masked(first), answer1, masked(second), answer2), ex.labels());
    assertEquals(
        "<s><|system|>\nBe brief.\n<|user|>\nHi there\n<|assistant|>\nHello!</s>"
            + "<|user|>\nBye\n<|assistant|>\nGoodbye, friend.</s>",
        tok.decode(ex.inputIds()));
    long[] learned = Arrays.stream(ex.labels()).filter(l -> l != Example.IGNORE).toArray();
    assertEquals("Hello!</s>Goodbye, friend.</s>", tok.decode(learned));
    assertArrayEquals(cat(one(BOS), first, answer1, second), data.promptIds(0));
    assertEquals("Goodbye, friend.", data.reference(0));
  }

  @Test
  void chatWithoutBosKeepsTrailingMessagesOutOfTheLoss() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir,
            "c.jsonl",
            "{\"messages\": [{\"role\": \"assistant\", \"content\": \"Welcome.\"},"
                + " {\"role\": \"user\", \"content\": \"Thanks\"}]}");
    JsonlDataset data =
        JsonlDataset.load(file, Format.CHAT, new TextEncoding(tok, -1, EOS), 1024, false);
    long[] header = tok.encode("<|assistant|>\n");
    long[] answer = cat(tok.encode("Welcome."), one(EOS));
    long[] tail = tok.encode("<|user|>\nThanks\n");
    assertEquals(
        new Example(cat(header, answer, tail), cat(masked(header), answer, masked(tail))),
        data.get(0));
    assertArrayEquals(header, data.promptIds(0));
    assertEquals("Welcome.", data.reference(0));
  }

  private static final String CHATML =
      "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n"
          + "' + m['content'] + '<|im_end|>\\n"
          + "' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n"
          + "' }}{% endif %}";

  @Test
  void chatWithTheModelsTemplateLabelsWhatEachAssistantTurnAdds() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir,
            "c.jsonl",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                + " {\"role\": \"user\", \"content\": \"Hi\"},"
                + " {\"role\": \"assistant\", \"content\": \"Hello!\"},"
                + " {\"role\": \"user\", \"content\": \"Bye\"},"
                + " {\"role\": \"assistant\", \"content\": \"Goodbye.\"},"
                + " {\"role\": \"user\", \"content\": \"ok\"}]}");
    ChatTemplate template = ChatTemplate.parse(CHATML, "test template", Map.of());
    JsonlDataset data =
        JsonlDataset.load(
            file, Format.CHAT, new TextEncoding(tok, BOS, EOS, template), 1024, false);
    long[] context1 =
        tok.encode(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\n");
    long[] turn1 = tok.encode("Hello!<|im_end|>\n");
    long[] context2 = tok.encode("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    long[] turn2 = tok.encode("Goodbye.<|im_end|>\n");
    long[] tail = tok.encode("<|im_start|>user\nok<|im_end|>\n");
    assertEquals(
        new Example(
            cat(context1, turn1, context2, turn2, tail),
            cat(masked(context1), turn1, masked(context2), turn2, masked(tail))),
        data.get(0));
    assertArrayEquals(cat(context1, turn1, context2), data.promptIds(0));
    assertEquals("Goodbye.", data.reference(0));
  }

  @Test
  void aTemplateThatRaisesFailsWithFileAndLine() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir,
            "c.jsonl",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"},"
                + " {\"role\": \"assistant\", \"content\": \"b\"}]}",
            "{\"messages\": [{\"role\": \"assistant\", \"content\": \"b\"}]}");
    ChatTemplate template =
        ChatTemplate.parse(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user')"
                + " }}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}",
            "strict template", Map.of());
    DataFormatException e =
        assertThrows(
            DataFormatException.class,
            () ->
                JsonlDataset.load(
                    file, Format.CHAT, new TextEncoding(tok, -1, EOS, template), 1024, false));
    assertTrue(e.getMessage().contains("c.jsonl:2"), e.getMessage());
    assertTrue(e.getMessage().contains("must start with user"), e.getMessage());
  }

  @Test
  void tokensAreTakenAsGivenWithoutTokenizer() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir,
            "t.jsonl",
            "{\"input_ids\": [5, 6, 7, 8], \"labels\": [-100, -100, 7, 8]}",
            "{\"input_ids\": [9, 10, 11]}",
            "{\"input_ids\": [9, 10], \"labels\": null}");
    JsonlDataset data =
        JsonlDataset.load(file, Format.TOKENS, new TextEncoding(null, BOS, EOS), 1024, false);
    assertEquals(new Example(new long[] {5, 6, 7, 8}, new long[] {-100, -100, 7, 8}), data.get(0));
    assertEquals(new Example(new long[] {9, 10, 11}, new long[] {9, 10, 11}), data.get(1));
    assertEquals(new Example(new long[] {9, 10}, new long[] {9, 10}), data.get(2));
    assertEquals(2, data.get(0).labelCount());
    assertEquals(2, data.get(1).labelCount(), "position 0 is never predicted");
    assertArrayEquals(new long[] {5, 6}, data.promptIds(0));
    assertArrayEquals(new long[0], data.promptIds(1));
    assertNull(data.reference(0));
  }

  @Test
  void truncationKeepsTheStartAndExamplesWithNothingToLearn() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir, "a.jsonl", "{\"instruction\": \"Say hello.\", \"output\": \"Hello there.\"}");
    long[] prompt = cat(one(BOS), tok.encode(WITHOUT_INPUT));
    long[] response = cat(tok.encode("Hello there."), one(EOS));
    long[] full = cat(prompt, response);
    int seqLen = prompt.length + 2;
    Example cut = JsonlDataset.load(file, Format.ALPACA, encoding, seqLen, false).get(0);
    assertArrayEquals(Arrays.copyOf(full, seqLen), cut.inputIds());
    assertArrayEquals(
        Arrays.copyOf(cat(masked(prompt), response), seqLen), cut.labels(), "eos cut off");
    assertEquals(2, cut.labelCount());

    JsonlDataset short5 = JsonlDataset.load(file, Format.ALPACA, encoding, 5, false);
    assertEquals(1, short5.size(), "kept although nothing is left to learn");
    assertEquals(new Example(Arrays.copyOf(full, 5), masked(new long[5])), short5.get(0));
    assertEquals(0, short5.get(0).labelCount());
    assertArrayEquals(prompt, short5.promptIds(0), "the prompt is not cut");

    Path tokens = TestTokenizer.jsonl(dir, "t.jsonl", "{\"input_ids\": [1, 2, 3, 4, 5]}");
    assertEquals(
        new Example(new long[] {1, 2, 3}, new long[] {1, 2, 3}),
        JsonlDataset.load(tokens, Format.TOKENS, TextEncoding.none(), 3, false).get(0));
  }

  @Test
  void blankLinesAreIgnored() throws IOException {
    Path file =
        TestTokenizer.jsonl(
            dir,
            "t.jsonl",
            "\uFEFF",
            "{\"input_ids\": [1]}\r",
            "   ",
            "\t",
            "{\"input_ids\": [2]}",
            "");
    JsonlDataset data = JsonlDataset.load(file, Format.TOKENS, TextEncoding.none(), 8, false);
    assertEquals(2, data.size());
    assertArrayEquals(new long[] {2}, data.get(1).inputIds());
    Path empty = TestTokenizer.jsonl(dir, "e.jsonl", "");
    assertEquals(0, JsonlDataset.load(empty, Format.TOKENS, TextEncoding.none(), 8, false).size());
  }

  @Test
  void missingFileAndBadArguments() throws IOException {
    Path missing = dir.resolve("nope.jsonl");
    NoSuchFileException e =
        assertThrows(
            NoSuchFileException.class,
            () -> JsonlDataset.load(missing, Format.TOKENS, TextEncoding.none(), 8, false));
    assertTrue(e.getMessage().startsWith(missing.toString()), e.getMessage());
    assertThrows(
        IOException.class,
        () -> JsonlDataset.load(dir, Format.TOKENS, TextEncoding.none(), 8, false));
    Path file = TestTokenizer.jsonl(dir, "t.jsonl", "{\"input_ids\": [1]}");
    assertThrows(
        IllegalArgumentException.class,
        () -> JsonlDataset.load(file, Format.ALPACA, TextEncoding.none(), 8, false));
    assertThrows(
        IllegalArgumentException.class,
        () -> JsonlDataset.load(file, Format.TOKENS, TextEncoding.none(), 0, false));
    assertThrows(IllegalArgumentException.class, () -> new TextEncoding(tok, BOS, 1_000_000));
  }

  @Test
  void formatNames() {
    assertEquals(Format.ALPACA, Format.parse("alpaca"));
    assertEquals(Format.CHAT, Format.parse(" Chat "));
    assertEquals(Format.TOKENS, Format.parse("TOKENS"));
    assertEquals("tokens", Format.TOKENS.toString());
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> Format.parse("sharegpt"));
    assertTrue(e.getMessage().contains("alpaca, chat or tokens"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> Format.parse(null));
  }
}
