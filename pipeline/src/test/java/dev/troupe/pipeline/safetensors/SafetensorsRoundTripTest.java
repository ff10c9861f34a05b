package dev.troupe.pipeline.safetensors;

import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.concat;
import static dev.troupe.pipeline.safetensors.SafetensorsFixtures.u64;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Random;
import java.util.SortedMap;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsRoundTripTest {
  @TempDir Path dir;

  private static byte[] random(int n, long seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  private static byte[] bytesOf(ByteBuffer b) {
    byte[] out = new byte[b.remaining()];
    b.duplicate().get(out);
    return out;
  }

  @Test
  void everyDtypeRoundTripsWithExactBytes() throws IOException {
    SortedMap<String, TensorData> tensors = new TreeMap<>();
    Map<String, byte[]> expected = new TreeMap<>();
    long seed = 1;
    for (DType t : DType.values()) {
      byte[] b = random(3 * 5 * t.byteSize(), seed++);
      expected.put("w." + t.code(), b);
      tensors.put("w." + t.code(), new TensorData(t, new long[] {3, 5}, ByteBuffer.wrap(b)));
    }
    Path f = dir.resolve("model.safetensors");
    SafetensorsWriter.write(f, tensors, Map.of("format", "pt", "note", "ünïcödé"));
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertEquals(List.copyOf(tensors.keySet()), List.copyOf(sf.names()));
      assertEquals(Map.of("format", "pt", "note", "ünïcödé"), sf.metadata());
      for (DType t : DType.values()) {
        TensorInfo info = sf.info("w." + t.code());
        assertEquals(t, info.dtype());
        assertArrayEquals(new long[] {3, 5}, info.shape());
        assertEquals(15, info.numel());
        assertEquals(15L * t.byteSize(), info.byteLength());
        assertArrayEquals(expected.get("w." + t.code()), bytesOf(sf.data("w." + t.code())));
        // read() copies the same bytes, from the buffer's position on, and no more
        ByteBuffer copy = ByteBuffer.allocateDirect((int) info.byteLength() + 3);
        copy.position(2);
        sf.read("w." + t.code(), copy);
        assertEquals(2, copy.position(), "read() leaves the buffer's position alone");
        byte[] got = new byte[(int) info.byteLength()];
        copy.get(2, got);
        assertArrayEquals(expected.get("w." + t.code()), got);
        assertEquals(0, copy.get(2 + got.length));
        ByteBuffer small = ByteBuffer.allocate((int) info.byteLength() - 1);
        org.junit.jupiter.api.Assertions.assertThrows(
            IllegalArgumentException.class, () -> sf.read("w." + t.code(), small));
      }
      assertEquals(0, sf.dataStart() % 8, "data section aligned to 8");
      long total = expected.values().stream().mapToLong(b -> b.length).sum();
      assertEquals(sf.dataStart() + total, Files.size(f), "tensors contiguous, nothing trailing");
    }
  }

  @Test
  void scalarAndZeroLengthTensors() throws IOException {
    SortedMap<String, TensorData> tensors = new TreeMap<>();
    tensors.put("scalar", TensorData.ofFloats(new long[0], new float[] {3.5f}));
    tensors.put("empty", new TensorData(DType.I64, new long[] {4, 0}, ByteBuffer.allocate(0)));
    tensors.put(
        "one",
        new TensorData(
            DType.I32,
            new long[] {1},
            ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, -7)));
    Path f = dir.resolve("s.safetensors");
    SafetensorsWriter.write(f, tensors, null);
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      TensorInfo s = sf.info("scalar");
      assertArrayEquals(new long[0], s.shape());
      assertEquals(1, s.numel());
      assertEquals(3.5f, sf.data("scalar").getFloat(0));
      TensorInfo e = sf.info("empty");
      assertEquals(0, e.numel());
      assertEquals(0, sf.data("empty").remaining());
      assertEquals(-7, sf.data("one").getInt(0));
      assertEquals(Map.of(), sf.metadata());
    }
  }

  @Test
  void dataBuffersAreReadOnlyLittleEndianIndependentViews() throws IOException {
    Path f = dir.resolve("v.safetensors");
    SafetensorsWriter.write(
        f,
        new TreeMap<>(
            Map.of(
                "x", TensorData.ofFloats(new long[] {2, 2}, new float[] {1f, -2f, 3.25f, 4e9f}))),
        Map.of());
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      ByteBuffer a = sf.data("x");
      assertTrue(a.isReadOnly());
      assertEquals(ByteOrder.LITTLE_ENDIAN, a.order());
      assertEquals(0, a.position());
      assertEquals(16, a.limit());
      assertEquals(-2f, a.getFloat(4));
      assertEquals(4e9f, a.getFloat(12));
      a.position(8);
      ByteBuffer b = sf.data("x");
      assertNotSame(a, b);
      assertEquals(0, b.position(), "a caller moving its view does not move the next one");
      assertThrows(java.nio.ReadOnlyBufferException.class, () -> b.put(0, (byte) 1));
    }
  }

  /** A file laid out exactly as the reference implementation writes it, built by hand. */
  @Test
  void readsAndWritesTheReferenceLayout() throws IOException {
    String json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    byte[] header = json.getBytes(StandardCharsets.US_ASCII);
    int padded = (header.length + 7) / 8 * 8;
    byte[] pad = " ".repeat(padded - header.length).getBytes(StandardCharsets.US_ASCII);
    byte[] data =
        ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putFloat(1f).putFloat(2f).array();
    byte[] reference = concat(u64(padded), header, pad, data);
    Path hand = SafetensorsFixtures.bytes(dir, "hand.safetensors", reference);
    try (SafetensorsFile sf = SafetensorsFile.open(hand)) {
      assertEquals(new TensorInfo("a", DType.F32, new long[] {2}, 0, 8), sf.info("a"));
      assertEquals(2f, sf.data("a").getFloat(4));
    }
    Path ours = dir.resolve("ours.safetensors");
    SafetensorsWriter.write(
        ours,
        new TreeMap<>(Map.of("a", TensorData.ofFloats(new long[] {2}, new float[] {1f, 2f}))),
        null);
    assertArrayEquals(reference, Files.readAllBytes(ours));
  }

  @Test
  void missingTensorAndClosedFile() throws IOException {
    Path f = dir.resolve("m.safetensors");
    SafetensorsWriter.write(
        f, new TreeMap<>(Map.of("x", TensorData.ofFloats(new long[] {1}, new float[] {1f}))), null);
    SafetensorsFile sf = SafetensorsFile.open(f);
    NoSuchElementException e = assertThrows(NoSuchElementException.class, () -> sf.info("nope"));
    assertTrue(
        e.getMessage().contains("nope") && e.getMessage().contains(f.toString()), e.getMessage());
    assertThrows(NoSuchElementException.class, () -> sf.data("nope"));
    assertEquals(f, sf.path());
    ByteBuffer before = sf.data("x");
    sf.close();
    assertThrows(IllegalStateException.class, () -> sf.data("x"));
    assertEquals(1f, before.getFloat(0), "buffers handed out stay valid after close");
  }

  @Test
  void dtypeCodes() {
    for (DType t : DType.values()) {
      assertEquals(t, DType.fromCode(t.code()));
    }
    assertEquals("BF16", DType.BF16.code());
    assertEquals(8, DType.I64.byteSize());
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> DType.fromCode("F8_E4M3"));
    assertTrue(e.getMessage().contains("F8_E4M3"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> DType.fromCode("f32"));
    assertThrows(IllegalArgumentException.class, () -> DType.fromCode(null));
  }

  @Test
  void tensorDataChecksItsLength() {
    assertThrows(
        IllegalArgumentException.class,
        () -> new TensorData(DType.F32, new long[] {2, 3}, ByteBuffer.allocate(20)));
    assertThrows(
        IllegalArgumentException.class,
        () -> new TensorData(DType.U8, new long[] {-1}, ByteBuffer.allocate(0)));
    TensorData ok = TensorData.ofFloats(new long[] {2}, new float[] {1f, 2f});
    assertEquals(8, ok.bytes().remaining());
    assertEquals(2f, ok.bytes().getFloat(4));
    assertEquals(ok, TensorData.ofFloats(new long[] {2}, new float[] {1f, 2f}));
    assertThrows(
        IllegalArgumentException.class,
        () -> TensorData.ofFloats(new long[] {3}, new float[] {1f}));
  }
}
