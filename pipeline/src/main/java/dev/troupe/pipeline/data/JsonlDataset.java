package dev.troupe.pipeline.data;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Training examples read from a JSONL file (one JSON object per line, UTF-8), encoded to ids and
 * labels and held in memory.
 *
 * <p>Formats ({@code bos}/{@code eos} from the {@link TextEncoding}, left out where {@code -1}):
 *
 * <ul>
 *   <li>{@link Format#ALPACA}: {@code {"instruction": str, "input": str (optional, may be empty or
 *       null), "output": str}}. The prompt is the Stanford Alpaca template: with input, {@code
 *       "Below is an instruction that describes a task, paired with an input that provides further
 *       context. Write a response that appropriately completes the request.\n\n###
 *       Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"}; without, {@code
 *       "Below is an instruction that describes a task. Write a response that appropriately
 *       completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"}. Ids are
 *       {@code [bos] + encode(prompt) + encode(output) + [eos]} (prompt and output encoded apart,
 *       so the boundary is exact); only the output tokens and eos are labelled.
 *   <li>{@link Format#CHAT}: {@code {"messages": [{"role": "system"|"user"|"assistant", "content":
 *       str}, ...]}} with at least one assistant message. With a {@link TextEncoding#chatTemplate()
 *       chat template} (the model's own), the text is what the template renders, and what rendering
 *       each assistant message adds to the conversation before it (rendered with the generation
 *       prompt) is labelled, end-of-turn text included; no bos or eos is added (the template writes
 *       its own). Without one, Troupe's default template is used: {@code [bos]}, then each message
 *       as {@code "<|{role}|>\n{content}\n"}, except that an assistant message is {@code
 *       "<|assistant|>\n{content}"} followed by the eos token; only assistant contents and their
 *       eos tokens are labelled. Text between assistant contents is encoded as one piece.
 *   <li>{@link Format#TOKENS}: {@code {"input_ids": [int], "labels": [int] (optional, default
 *       input_ids)}}, non-empty, of equal length; ids {@code >= 0} (and below the vocabulary size
 *       when a tokenizer is given), labels likewise or {@code -100}. Nothing is added.
 * </ul>
 *
 * <p>Examples longer than {@code seqLen} are cut to their first {@code seqLen} positions. An
 * example with no label left after that (nothing to learn) is still kept: it contributes zero
 * tokens to the loss, and the step numbering stays the same whatever {@code seqLen} is.
 *
 * <p>Blank lines are ignored. Other fields in a record are ignored. A malformed line (invalid
 * UTF-8, not JSON, not an object, a missing or ill-typed field, unequal lengths, an unknown role,
 * ...) throws a {@link DataFormatException} {@code "<file>:<line>: <what>"}, or with {@code
 * skipMalformed} is skipped and counted in {@link #skipped()}.
 *
 * <p>Immutable and safe to share between threads once loaded.
 */
public final class JsonlDataset {
  private static final int KEPT_PROBLEMS = 20;
  private static final ObjectMapper JSON =
      JsonMapper.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

  private final Path file;
  private final List<Example> examples;
  private final List<long[]> prompts;
  private final List<String> references;
  private final int skipped;
  private final List<String> skippedProblems;

  private JsonlDataset(
      Path file,
      List<Example> examples,
      List<long[]> prompts,
      List<String> references,
      int skipped,
      List<String> skippedProblems) {
    this.file = file;
    this.examples = examples;
    this.prompts = prompts;
    this.references = references;
    this.skipped = skipped;
    this.skippedProblems = List.copyOf(skippedProblems);
  }

  /**
   * Reads and encodes every line of {@code file}; blank lines are ignored.
   *
   * @param seqLen the longest example kept; longer ones are cut
   * @param skipMalformed whether a malformed line is skipped and counted instead of thrown
   * @throws DataFormatException {@code "<file>:<line>: <what>"} for the first malformed line,
   *     unless {@code skipMalformed}
   * @throws NoSuchFileException if {@code file} does not exist
   * @throws IOException if it cannot be read
   * @throws IllegalArgumentException if {@code seqLen < 1}, or the format needs a tokenizer and
   *     {@code encoding} has none
   */
  public static JsonlDataset load(
      Path file, Format format, TextEncoding encoding, int seqLen, boolean skipMalformed)
      throws IOException {
    Objects.requireNonNull(file, "file");
    if (seqLen < 1) {
      throw new IllegalArgumentException("seqLen must be at least 1, got " + seqLen);
    }
    ExampleEncoder encoder = new ExampleEncoder(format, encoding);
    if (!Files.exists(file)) {
      throw new NoSuchFileException(file.toString(), null, "training data file not found");
    }
    if (Files.isDirectory(file)) {
      throw new IOException(file + ": is a directory, not a JSONL file");
    }
    List<Example> examples = new ArrayList<>();
    List<long[]> prompts = new ArrayList<>();
    List<String> references = new ArrayList<>();
    List<String> problems = new ArrayList<>();
    int skipped = 0;
    try (JsonlLines lines = new JsonlLines(Files.newInputStream(file))) {
      while (lines.next()) {
        TokenSequence seq;
        try {
          String text = text(lines);
          if (text.isBlank()) {
            continue;
          }
          seq = encoder.encode(parse(text));
        } catch (LineProblem problem) {
          DataFormatException e =
              new DataFormatException(file, lines.number(), problem.getMessage());
          if (!skipMalformed) {
            throw e;
          }
          skipped++;
          if (problems.size() < KEPT_PROBLEMS) {
            problems.add(e.getMessage());
          }
          continue;
        }
        examples.add(seq.toExample(seqLen));
        prompts.add(seq.promptIds());
        references.add(seq.reference());
      }
    }
    return new JsonlDataset(file, examples, prompts, references, skipped, problems);
  }

  private static String text(JsonlLines lines) throws LineProblem {
    try {
      return lines.text();
    } catch (CharacterCodingException e) {
      throw new LineProblem("not valid UTF-8");
    }
  }

  private static JsonNode parse(String text) throws LineProblem {
    try (JsonParser parser = JSON.createParser(text)) {
      JsonNode node = JSON.readTree(parser);
      if (parser.nextToken() != null) {
        throw new LineProblem("not valid JSON: more text after the first value");
      }
      return node;
    } catch (JsonProcessingException e) {
      throw new LineProblem("not valid JSON: " + e.getOriginalMessage());
    } catch (IOException e) {
      throw new LineProblem("not valid JSON: " + e.getMessage());
    }
  }

  /** The file the examples were read from, as given to {@link #load}. */
  public Path file() {
    return file;
  }

  /** The number of examples (lines that are neither blank nor skipped). */
  public int size() {
    return examples.size();
  }

  /** The example from the {@code index}-th used line, cut to {@code seqLen}. */
  public Example get(int index) {
    return examples.get(index);
  }

  /** The number of malformed lines skipped (always 0 without {@code skipMalformed}). */
  public int skipped() {
    return skipped;
  }

  /** The {@link DataFormatException} messages of the first 20 skipped lines. */
  public List<String> skippedProblems() {
    return skippedProblems;
  }

  /**
   * The prompt of example {@code index} for generation, not cut to {@code seqLen}: alpaca: bos and
   * the prompt template; chat: everything up to and including the last assistant message's {@code
   * "<|assistant|>\n"}; tokens: the ids before the first position with a label.
   */
  public long[] promptIds(int index) {
    return prompts.get(index).clone();
  }

  /**
   * The reference response text of example {@code index}: alpaca: {@code output}; chat: the last
   * assistant message's content; tokens: {@code null}.
   */
  public String reference(int index) {
    return references.get(index);
  }
}
