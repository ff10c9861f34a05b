package dev.troupe.pipeline.metrics;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Writes scalars to a TensorBoard event file ({@code events.out.tfevents.*}) in a folder: TFRecord
 * framing around hand-encoded {@code tensorflow.Event} protobufs, no TensorFlow or protobuf library
 * needed. Records are buffered; {@link #flush()} hands them to the OS and {@link #close()} also
 * fsyncs. Thread-safe.
 */
public final class TensorBoardWriter implements AutoCloseable {
  static final String FILE_VERSION = "brain.Event:2";

  // Field numbers of tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto.
  private static final int EVENT_WALL_TIME = 1;
  private static final int EVENT_STEP = 2;
  private static final int EVENT_FILE_VERSION = 3;
  private static final int EVENT_SUMMARY = 5;
  private static final int SUMMARY_VALUE = 1;
  private static final int VALUE_TAG = 1;
  private static final int VALUE_SIMPLE_VALUE = 2;

  private final Path file;
  private final FileChannel channel;
  private final OutputStream out;
  private final InstantSource clock;
  private boolean closed;

  private TensorBoardWriter(Path file, FileChannel channel, InstantSource clock) {
    this.file = file;
    this.channel = channel;
    this.out = new BufferedOutputStream(Channels.newOutputStream(channel), 1 << 16);
    this.clock = clock;
  }

  /**
   * Creates the folder if needed and a new event file in it, named {@code events.out.tfevents.<unix
   * seconds>.<hostname>.<pid>.troupe}; should that name be taken (a second writer in the same
   * process and second), a counter goes before {@code .troupe}. The file starts with the {@code
   * file_version} event TensorBoard expects, already flushed.
   */
  public static TensorBoardWriter open(Path dir) throws IOException {
    return open(dir, InstantSource.system());
  }

  /** As {@link #open(Path)}, with the clock that stamps each event's wall time. */
  static TensorBoardWriter open(Path dir, InstantSource clock) throws IOException {
    Files.createDirectories(dir);
    Instant now = clock.instant();
    String base =
        "events.out.tfevents."
            + now.getEpochSecond()
            + "."
            + hostname()
            + "."
            + ProcessHandle.current().pid();
    for (int n = 0; ; n++) {
      Path file = dir.resolve(base + (n == 0 ? "" : "." + n) + ".troupe");
      FileChannel channel;
      try {
        channel = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
      } catch (FileAlreadyExistsException e) {
        if (n >= 1000) {
          throw e;
        }
        continue;
      }
      TensorBoardWriter writer = new TensorBoardWriter(file, channel, clock);
      try {
        writer.out.write(TfRecord.frame(versionEvent(wallTime(now))));
        writer.out.flush();
      } catch (IOException | RuntimeException e) {
        channel.close();
        Files.deleteIfExists(file);
        throw e;
      }
      return writer;
    }
  }

  /** The event file being written. */
  public Path file() {
    return file;
  }

  /**
   * Appends one scalar. TensorBoard stores scalars as 32-bit floats, so {@code value} is rounded to
   * float; NaN and infinities are kept (TensorBoard shows them).
   */
  public synchronized void scalar(String tag, long step, double value) throws IOException {
    Objects.requireNonNull(tag, "tag");
    if (tag.isEmpty()) {
      throw new IllegalArgumentException("empty tag");
    }
    ensureOpen();
    out.write(TfRecord.frame(scalarEvent(wallTime(clock.instant()), step, tag, (float) value)));
  }

  /** Hands buffered events to the OS, where TensorBoard can see them. */
  public synchronized void flush() throws IOException {
    ensureOpen();
    out.flush();
  }

  /** Flushes, fsyncs and closes the file; closing again does nothing. */
  @Override
  public synchronized void close() throws IOException {
    if (closed) {
      return;
    }
    closed = true;
    try (channel) {
      out.flush();
      channel.force(true);
    }
  }

  /**
   * The scalars in an event file, in file order, checking the length and data CRCs of every record.
   * A minimal reader, for tests: it fails on any corruption or truncation (also a half-written last
   * record) instead of skipping it, and ignores summary values that are not simple values.
   *
   * @throws IOException naming the record and byte offset where the file is corrupt
   */
  public static List<ScalarEvent> readScalars(Path eventFile) throws IOException {
    List<ScalarEvent> scalars = new ArrayList<>();
    List<byte[]> records = TfRecord.readAll(eventFile);
    for (int i = 0; i < records.size(); i++) {
      try {
        readEvent(new ProtoReader(records.get(i)), scalars);
      } catch (IOException e) {
        throw new IOException(eventFile + ": record " + i + ": " + e.getMessage(), e);
      }
    }
    return scalars;
  }

  static byte[] versionEvent(double wallTime) {
    return new ProtoWriter()
        .float64(EVENT_WALL_TIME, wallTime)
        .string(EVENT_FILE_VERSION, FILE_VERSION)
        .toByteArray();
  }

  static byte[] scalarEvent(double wallTime, long step, String tag, float value) {
    ProtoWriter value1 =
        new ProtoWriter().string(VALUE_TAG, tag).float32(VALUE_SIMPLE_VALUE, value);
    ProtoWriter event = new ProtoWriter().float64(EVENT_WALL_TIME, wallTime);
    if (step != 0) { // proto3 leaves default values out
      event.int64(EVENT_STEP, step);
    }
    return event
        .message(EVENT_SUMMARY, new ProtoWriter().message(SUMMARY_VALUE, value1))
        .toByteArray();
  }

  private static void readEvent(ProtoReader event, List<ScalarEvent> into) throws IOException {
    double wallTime = 0;
    long step = 0;
    List<ProtoReader> summaries = new ArrayList<>();
    while (event.next()) {
      switch (event.field()) {
        case EVENT_WALL_TIME -> wallTime = event.float64();
        case EVENT_STEP -> step = event.int64();
        case EVENT_SUMMARY -> summaries.add(event.message());
        default -> event.skip();
      }
    }
    for (ProtoReader summary : summaries) {
      while (summary.next()) {
        if (summary.field() != SUMMARY_VALUE) {
          summary.skip();
          continue;
        }
        ProtoReader value = summary.message();
        String tag = "";
        Float simple = null;
        while (value.next()) {
          switch (value.field()) {
            case VALUE_TAG -> tag = value.string();
            case VALUE_SIMPLE_VALUE -> simple = value.float32();
            default -> value.skip();
          }
        }
        if (simple != null) {
          into.add(new ScalarEvent(tag, step, simple, wallTime));
        }
      }
    }
  }

  private void ensureOpen() {
    if (closed) {
      throw new IllegalStateException(file + ": writer is closed");
    }
  }

  private static double wallTime(Instant t) {
    return t.getEpochSecond() + t.getNano() / 1e9;
  }

  /** The host name for the file name, kept to characters safe in file names. */
  private static String hostname() {
    String name = "";
    try {
      name = Files.readString(Path.of("/proc/sys/kernel/hostname"), StandardCharsets.UTF_8).strip();
    } catch (IOException | RuntimeException e) {
      // not Linux; ask the resolver below
    }
    if (name.isEmpty()) {
      try {
        name = InetAddress.getLocalHost().getHostName();
      } catch (IOException | RuntimeException e) {
        name = "localhost";
      }
    }
    return name.replaceAll("[^A-Za-z0-9._-]", "_");
  }
}
