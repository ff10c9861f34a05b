package dev.troupe.pipeline.metrics;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * TFRecord framing, as TensorFlow and TensorBoard read it: uint64 little-endian length, uint32
 * masked CRC32C of those eight bytes, the data, uint32 masked CRC32C of the data.
 */
final class TfRecord {
  static final int HEADER_BYTES = 12;
  static final int FOOTER_BYTES = 4;

  private TfRecord() {}

  static int crc32c(byte[] bytes, int offset, int length) {
    CRC32C crc = new CRC32C();
    crc.update(bytes, offset, length);
    return (int) crc.getValue();
  }

  /** TensorFlow's masking, so that a CRC stored in data is not itself a CRC of that data. */
  static int mask(int crc) {
    return ((crc >>> 15) | (crc << 17)) + 0xa282ead8;
  }

  /** One complete record around {@code data}. */
  static byte[] frame(byte[] data) {
    ByteBuffer b =
        ByteBuffer.allocate(HEADER_BYTES + data.length + FOOTER_BYTES)
            .order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(data.length);
    b.putInt(mask(crc32c(b.array(), 0, 8)));
    b.put(data);
    b.putInt(mask(crc32c(data, 0, data.length)));
    return b.array();
  }

  /**
   * The data of every record in {@code file}, each checked against both CRCs.
   *
   * @throws IOException naming the record and byte offset on a CRC mismatch or a truncated record
   */
  static List<byte[]> readAll(Path file) throws IOException {
    byte[] all = Files.readAllBytes(file);
    ByteBuffer b = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
    List<byte[]> records = new ArrayList<>();
    while (b.hasRemaining()) {
      int at = b.position();
      String where = file + ": record " + records.size() + " at byte " + at + ": ";
      if (b.remaining() < HEADER_BYTES) {
        throw new IOException(where + "truncated header (" + b.remaining() + " bytes left)");
      }
      long length = b.getLong();
      check(where + "length CRC mismatch", b.getInt(), crc32c(all, at, 8));
      if (length < 0 || length > b.remaining() - FOOTER_BYTES) {
        throw new IOException(
            where
                + "truncated: length "
                + Long.toUnsignedString(length)
                + " but only "
                + b.remaining()
                + " bytes left");
      }
      byte[] data = new byte[(int) length];
      b.get(data);
      check(where + "data CRC mismatch", b.getInt(), crc32c(data, 0, data.length));
      records.add(data);
    }
    return records;
  }

  private static void check(String what, int stored, int crc) throws IOException {
    if (stored != mask(crc)) {
      throw new IOException(
          what
              + " (stored 0x"
              + Integer.toHexString(stored)
              + ", computed 0x"
              + Integer.toHexString(mask(crc))
              + "); the file is corrupt");
    }
  }
}
