package dev.troupe.pipeline.safetensors;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Locale;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * One safetensors file. Opening reads and validates the whole header (and that the data section is
 * exactly as long as the tensors need); tensor data is memory-mapped lazily, one mapping per
 * tensor, so files over 2 GiB work as long as each tensor is under 2 GiB. Safe for concurrent
 * readers.
 */
public final class SafetensorsFile implements TensorSource {
  private final Path file;
  private final FileChannel channel;
  private final Header header;
  private final Map<String, MappedByteBuffer> mappings = new ConcurrentHashMap<>();
  private volatile boolean closed;

  private SafetensorsFile(Path file, FileChannel channel, Header header) {
    this.file = file;
    this.channel = channel;
    this.header = header;
  }

  /**
   * Opens and validates {@code file}.
   *
   * @throws SafetensorsException naming the file and the problem if it is missing or malformed
   */
  public static SafetensorsFile open(Path file) throws IOException {
    if (!Files.isRegularFile(file)) {
      throw new SafetensorsException(
          file, Files.exists(file) ? "not a regular file" : "file does not exist");
    }
    FileChannel ch = FileChannel.open(file, StandardOpenOption.READ);
    try {
      return new SafetensorsFile(file, ch, Header.read(file, ch));
    } catch (IOException | RuntimeException e) {
      try {
        ch.close();
      } catch (IOException suppressed) {
        e.addSuppressed(suppressed);
      }
      throw e;
    }
  }

  /** The {@code __metadata__} entries (sorted, unmodifiable; empty if the header has none). */
  public Map<String, String> metadata() {
    return header.metadata();
  }

  /** Where the data section starts in the file: 8 plus the header length. */
  public long dataStart() {
    return header.dataStart();
  }

  @Override
  public Set<String> names() {
    return header.tensors().keySet();
  }

  @Override
  public TensorInfo info(String name) {
    TensorInfo t = header.tensors().get(name);
    if (t == null) {
      throw new NoSuchElementException("no tensor '" + name + "' in " + file);
    }
    return t;
  }

  @Override
  public ByteBuffer data(String name) {
    TensorInfo t = info(name);
    if (closed) {
      throw new IllegalStateException(file + " is closed");
    }
    if (t.byteLength() > Integer.MAX_VALUE) {
      throw new UncheckedIOException(
          new SafetensorsException(
              file,
              "tensor "
                  + name
                  + " is "
                  + String.format(Locale.ROOT, "%.1f", t.byteLength() / (double) (1L << 30))
                  + " GiB; tensors over 2 GiB are not supported"));
    }
    if (t.byteLength() == 0) {
      return ByteBuffer.allocate(0).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }
    MappedByteBuffer m = mappings.computeIfAbsent(name, n -> map(t));
    return m.duplicate().order(ByteOrder.LITTLE_ENDIAN);
  }

  @Override
  public void read(String name, ByteBuffer dst) throws IOException {
    TensorInfo t = info(name);
    if (closed) {
      throw new IllegalStateException(file + " is closed");
    }
    if (dst.remaining() < t.byteLength()) {
      throw new IllegalArgumentException(
          "buffer has room for " + dst.remaining() + " bytes; " + name + " has " + t.byteLength());
    }
    ByteBuffer window = dst.duplicate();
    window.limit(window.position() + (int) t.byteLength());
    long at = header.dataStart() + t.begin();
    while (window.hasRemaining()) {
      int n = channel.read(window, at);
      if (n < 0) {
        throw new SafetensorsException(file, "file ends inside tensor " + name);
      }
      at += n;
    }
  }

  private MappedByteBuffer map(TensorInfo t) {
    try {
      return channel.map(
          FileChannel.MapMode.READ_ONLY, header.dataStart() + t.begin(), t.byteLength());
    } catch (IOException e) {
      throw new UncheckedIOException(
          new SafetensorsException(file, "cannot map tensor " + t.name(), e));
    }
  }

  @Override
  public Path path() {
    return file;
  }

  @Override
  public void close() throws IOException {
    closed = true;
    channel.close();
  }

  @Override
  public String toString() {
    return "SafetensorsFile[" + file + ", " + header.tensors().size() + " tensors]";
  }
}
