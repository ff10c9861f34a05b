package dev.troupe.pipeline.data;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * The lines of a UTF-8 file, read one at a time so that a line with invalid UTF-8 can be reported
 * by number and skipped. Lines end at {@code \n}; a {@code \r} before it and a byte order mark at
 * the start of the file are dropped.
 */
final class JsonlLines implements Closeable {
  private final InputStream in;
  private final byte[] chunk = new byte[1 << 16];
  private final CharsetDecoder decoder =
      StandardCharsets.UTF_8
          .newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT);
  private int position;
  private int limit;
  private byte[] line = new byte[1024];
  private int lineLength;
  private long number;

  JsonlLines(InputStream in) {
    this.in = in;
  }

  /** Reads the next line; false at the end of the file. */
  boolean next() throws IOException {
    lineLength = 0;
    boolean started = false;
    while (true) {
      if (position == limit) {
        limit = Math.max(0, in.read(chunk));
        position = 0;
        if (limit == 0) {
          if (!started) {
            return false;
          }
          break;
        }
      }
      started = true;
      int start = position;
      while (position < limit && chunk[position] != '\n') {
        position++;
      }
      append(start, position - start);
      if (position < limit) {
        position++;
        break;
      }
    }
    number++;
    if (lineLength > 0 && line[lineLength - 1] == '\r') {
      lineLength--;
    }
    return true;
  }

  /** The 1-based number of the current line. */
  long number() {
    return number;
  }

  /** The current line as text. */
  String text() throws CharacterCodingException {
    String text = decoder.decode(ByteBuffer.wrap(line, 0, lineLength)).toString();
    return number == 1 && text.startsWith("\uFEFF") ? text.substring(1) : text;
  }

  private void append(int start, int count) {
    if (lineLength + count > line.length) {
      line = Arrays.copyOf(line, Math.max(line.length * 2, lineLength + count));
    }
    System.arraycopy(chunk, start, line, lineLength, count);
    lineLength += count;
  }

  @Override
  public void close() throws IOException {
    in.close();
  }
}
