package dev.troupe.pipeline.data;

import dev.troupe.pipeline.tokenizer.ByteLevelBpeTokenizerWriter;
import dev.troupe.pipeline.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** A small byte-level BPE tokenizer written into a test folder: bos 1, eos 2. */
final class TestTokenizer {
  static final long BOS = ByteLevelBpeTokenizerWriter.BOS_ID;
  static final long EOS = ByteLevelBpeTokenizerWriter.EOS_ID;

  private TestTokenizer() {}

  static TextTokenizer open(Path dir) throws IOException {
    Path file = dir.resolve("tokenizer.json");
    ByteLevelBpeTokenizerWriter.write(file, 600, ByteLevelBpeTokenizerWriter.defaultTrainingText());
    return TextTokenizer.open(file);
  }

  /** Writes {@code lines}, each followed by a newline, to {@code dir/name}. */
  static Path jsonl(Path dir, String name, String... lines) throws IOException {
    return Files.writeString(dir.resolve(name), String.join("\n", lines) + "\n");
  }
}
