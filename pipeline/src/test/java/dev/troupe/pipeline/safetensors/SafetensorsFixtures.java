package dev.troupe.pipeline.safetensors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.function.Executable;

/** Builds safetensors files byte by byte for the tests. */
final class SafetensorsFixtures {
  private SafetensorsFixtures() {}

  /** The 8-byte little-endian length prefix. */
  static byte[] u64(long n) {
    return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(n).array();
  }

  static byte[] concat(byte[]... parts) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] p : parts) {
      out.writeBytes(p);
    }
    return out.toByteArray();
  }

  /**
   * A file of the given header bytes (with their true length as prefix) followed by {@code data}.
   */
  static Path file(Path dir, String name, byte[] header, byte[] data) throws IOException {
    return bytes(dir, name, concat(u64(header.length), header, data));
  }

  /**
   * A file of the given JSON header text (UTF-8, its true length as prefix) followed by {@code
   * data}.
   */
  static Path file(Path dir, String json, byte[] data) throws IOException {
    return file(dir, "bad.safetensors", json.getBytes(StandardCharsets.UTF_8), data);
  }

  static Path bytes(Path dir, String name, byte[] content) throws IOException {
    Path p = dir.resolve(name);
    Files.write(p, content);
    return p;
  }

  /** A one-tensor header entry. */
  static String entry(String name, String dtype, String shape, String offsets) {
    return "\""
        + name
        + "\":{\"dtype\":\""
        + dtype
        + "\",\"shape\":"
        + shape
        + ",\"data_offsets\":"
        + offsets
        + "}";
  }

  static byte[] seq(int n) {
    byte[] b = new byte[n];
    for (int i = 0; i < n; i++) {
      b[i] = (byte) (i * 7 + 3);
    }
    return b;
  }

  /** Asserts that opening {@code file} fails with a message naming the file and every fragment. */
  static SafetensorsException assertRejected(Path file, String... fragments) {
    return assertFails(file, () -> SafetensorsFile.open(file).close(), fragments);
  }

  /**
   * Asserts that {@code action} fails with a SafetensorsException about {@code file} naming every
   * fragment.
   */
  static SafetensorsException assertFails(Path file, Executable action, String... fragments) {
    SafetensorsException e = assertThrows(SafetensorsException.class, action);
    assertEquals(file, e.file());
    assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
    for (String f : fragments) {
      assertTrue(e.getMessage().contains(f), "message <" + e.getMessage() + "> lacks <" + f + ">");
    }
    return e;
  }
}
