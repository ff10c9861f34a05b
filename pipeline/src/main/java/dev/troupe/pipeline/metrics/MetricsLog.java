package dev.troupe.pipeline.metrics;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.json.JsonWriteFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.troupe.pipeline.io.AtomicFile;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Collection;
import java.util.Map;
import java.util.Objects;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A {@code metrics.jsonl} file: one JSON object per line, each line handed to the OS in a single
 * write as soon as it is written, so a crash of the process loses nothing already written ({@link
 * #close()} also fsyncs, against a crash of the machine). Opening with a resume step drops the
 * lines of steps after it, so a run resumed from a checkpoint never shows a step twice.
 *
 * <p>Opening an existing file always replaces it (a new file renamed over the old one), even where
 * no line is dropped. That fences off a writer of an earlier run that still holds the file open: a
 * node that was frozen through a failover and wakes up with a commit in its mailbox writes its line
 * into the replaced file, which no reader sees, instead of after this run's lines. (Follow the file
 * with {@code tail -F}, which reopens it by name, not {@code tail -f}.)
 *
 * <p>JSON has no NaN or infinities: such numbers are written as the strings {@code "NaN"}, {@code
 * "Infinity"} and {@code "-Infinity"}, which pandas and Python's {@code float()} read back. Thread-
 * safe.
 */
public final class MetricsLog implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(MetricsLog.class);
  private static final ObjectMapper MAPPER =
      JsonMapper.builder()
          .enable(JsonWriteFeature.WRITE_NAN_AS_STRINGS)
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
          .build();
  private static final int MAX_DEPTH = 32;

  private final Path file;
  private final FileChannel channel;
  private boolean closed;

  private MetricsLog(Path file, FileChannel channel) {
    this.file = file;
    this.channel = channel;
  }

  /**
   * Opens {@code file} for appending, creating it and its folder if needed. An existing file keeps
   * only the lines whose {@code "step"} is at most {@code resumeStep} (lines of any kind; a line
   * without a numeric step is kept), and is replaced atomically by a new file with those lines
   * before anything is appended. A torn last line (a crash mid-write) and lines that are not JSON
   * objects are dropped.
   *
   * @param resumeStep the step of the checkpoint the run resumes from; 0 for a new run, which keeps
   *     only lines with a step of at most 0 (typically none)
   */
  public static MetricsLog open(Path file, long resumeStep) throws IOException {
    if (resumeStep < 0) {
      throw new IllegalArgumentException("resumeStep must be >= 0, got " + resumeStep);
    }
    Path dir = file.toAbsolutePath().getParent();
    if (dir != null) {
      Files.createDirectories(dir);
    }
    if (Files.exists(file)) {
      truncate(file, resumeStep);
    }
    FileChannel channel =
        FileChannel.open(
            file, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.APPEND);
    return new MetricsLog(file, channel);
  }

  /**
   * The fields a step's line starts with, in this order, for every writer of step lines (the
   * one-device trainer, the driver of a run over several devices), which add their own after them:
   * {@code step} (counted from 1), {@code loss}, {@code lr}, {@code grad_norm}, {@code tokens},
   * {@code tokens_per_s}, {@code precision}, {@code loss_scale} (1 outside fp16), {@code skipped}.
   */
  public static Map<String, Object> stepLine(
      long step,
      double loss,
      double lr,
      double gradNorm,
      long tokens,
      double tokensPerS,
      String precision,
      double lossScale,
      boolean skipped) {
    Map<String, Object> m = new java.util.LinkedHashMap<>();
    m.put("step", step);
    m.put("loss", loss);
    m.put("lr", lr);
    m.put("grad_norm", gradNorm);
    m.put("tokens", tokens);
    m.put("tokens_per_s", tokensPerS);
    m.put("precision", precision);
    m.put("loss_scale", lossScale);
    m.put("skipped", skipped);
    return m;
  }

  /** The file being written. */
  public Path file() {
    return file;
  }

  /**
   * Writes one line with {@code fields} in the map's iteration order (pass a {@link
   * java.util.LinkedHashMap} to choose it). Values may be null, numbers, strings, booleans, and
   * lists, arrays of primitive numbers and maps with string keys of these.
   *
   * @throws IllegalArgumentException for any other value, naming its key
   */
  public void write(Map<String, ?> fields) throws IOException {
    Objects.requireNonNull(fields, "fields");
    check("", fields, 0);
    byte[] json = MAPPER.writeValueAsBytes(fields);
    byte[] line = Arrays.copyOf(json, json.length + 1);
    line[json.length] = '\n';
    synchronized (this) {
      if (closed) {
        throw new IllegalStateException(file + ": metrics log is closed");
      }
      ByteBuffer b = ByteBuffer.wrap(line);
      while (b.hasRemaining()) {
        channel.write(b);
      }
    }
  }

  /** Fsyncs and closes the file; closing again does nothing. */
  @Override
  public synchronized void close() throws IOException {
    if (closed) {
      return;
    }
    closed = true;
    try (channel) {
      channel.force(true);
    }
  }

  private static void truncate(Path file, long resumeStep) throws IOException {
    byte[] all = Files.readAllBytes(file);
    BigDecimal last = BigDecimal.valueOf(resumeStep);
    ByteArrayOutputStream kept = new ByteArrayOutputStream(all.length);
    int dropped = 0;
    for (int start = 0; start < all.length; ) {
      int nl = start;
      while (nl < all.length && all[nl] != '\n') {
        nl++;
      }
      boolean terminated = nl < all.length;
      String text = new String(all, start, nl - start, StandardCharsets.UTF_8);
      JsonNode line = parse(text);
      if (line == null) {
        if (!text.isBlank()) {
          if (terminated) {
            LOG.warn("{}: dropping a line that is not a JSON object: {}", file, shorten(text));
          } else {
            LOG.info("{}: dropping a torn last line: {}", file, shorten(text));
          }
        }
      } else if (stepOf(line) != null && stepOf(line).compareTo(last) > 0) {
        dropped++;
      } else {
        kept.write(all, start, nl - start);
        kept.write('\n');
      }
      start = nl + 1;
    }
    if (dropped > 0) {
      LOG.info("{}: dropped {} lines after step {} to resume", file, dropped, resumeStep);
    }
    AtomicFile.write(file, kept.toByteArray()); // always a new file: see the class comment
  }

  /**
   * The loss of step {@code step}'s line in {@code file} (a per-step line, not an event); empty
   * where there is none.
   */
  public static java.util.OptionalDouble lossAt(Path file, long step) throws IOException {
    if (!Files.exists(file)) return java.util.OptionalDouble.empty();
    java.util.OptionalDouble loss = java.util.OptionalDouble.empty();
    for (String text : Files.readAllLines(file, StandardCharsets.UTF_8)) {
      JsonNode line = parse(text);
      if (line == null || line.has("event") || stepOf(line) == null) continue;
      if (stepOf(line).compareTo(BigDecimal.valueOf(step)) == 0 && line.path("loss").isNumber()) {
        loss = java.util.OptionalDouble.of(line.get("loss").asDouble());
      }
    }
    return loss;
  }

  /** The line as a JSON object, or null if it is not one (torn, blank or garbage). */
  private static JsonNode parse(String text) {
    if (text.isBlank()) {
      return null;
    }
    try {
      JsonNode node = MAPPER.readTree(text);
      return node != null && node.isObject() ? node : null;
    } catch (JsonProcessingException e) {
      return null;
    }
  }

  /** The line's numeric "step", or null if it has none (or a non-finite one). */
  private static BigDecimal stepOf(JsonNode line) {
    JsonNode step = line.get("step");
    if (step == null || !step.isNumber()) {
      return null;
    }
    try {
      return step.decimalValue();
    } catch (NumberFormatException e) {
      return null;
    }
  }

  private static String shorten(String s) {
    return s.length() > 80 ? s.substring(0, 77) + "..." : s;
  }

  private static void check(String key, Object value, int depth) {
    if (depth > MAX_DEPTH) {
      throw new IllegalArgumentException("metrics field " + key + " is nested too deeply");
    }
    if (value == null
        || value instanceof Number
        || value instanceof String
        || value instanceof Boolean
        || value instanceof double[]
        || value instanceof float[]
        || value instanceof long[]
        || value instanceof int[]) {
      return;
    }
    if (value instanceof Collection<?> list) {
      int i = 0;
      for (Object v : list) {
        check(key + "[" + i++ + "]", v, depth + 1);
      }
      return;
    }
    if (value instanceof Map<?, ?> map) {
      for (Map.Entry<?, ?> e : map.entrySet()) {
        if (!(e.getKey() instanceof String k)) {
          throw new IllegalArgumentException(
              "metrics field " + key + " has a key that is not a string: " + e.getKey());
        }
        check(key.isEmpty() ? k : key + "." + k, e.getValue(), depth + 1);
      }
      return;
    }
    throw new IllegalArgumentException(
        "metrics field "
            + key
            + " has a value of unsupported type "
            + value.getClass().getName()
            + "; use numbers, strings, booleans, lists or maps");
  }
}
