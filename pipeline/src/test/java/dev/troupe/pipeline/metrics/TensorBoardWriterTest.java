package dev.troupe.pipeline.metrics;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.InstantSource;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TensorBoardWriterTest {
  static final Instant T0 = Instant.ofEpochSecond(1_700_000_000L, 250_000_000);
  static final double WALL = 1_700_000_000.25;

  @TempDir Path dir;

  /** Writes a few scalars, including awkward ones, and returns what should read back. */
  static List<ScalarEvent> writeSample(TensorBoardWriter tb) throws IOException {
    tb.scalar("eval/loss", 0, -1.0); // steps never decrease: TensorBoard purges "orphans"
    tb.scalar("train/loss", 1, 2.5);
    tb.scalar("train/loss", 2, 2.3);
    tb.scalar("train/lr", 2, 1e-4);
    tb.scalar("train/grad_norm", 300, Double.NaN);
    tb.scalar("train/grad_norm", Long.MAX_VALUE, 1e300);
    return List.of(
        new ScalarEvent("eval/loss", 0, -1f, WALL),
        new ScalarEvent("train/loss", 1, 2.5f, WALL),
        new ScalarEvent("train/loss", 2, 2.3f, WALL),
        new ScalarEvent("train/lr", 2, 1e-4f, WALL),
        new ScalarEvent("train/grad_norm", 300, Float.NaN, WALL),
        new ScalarEvent("train/grad_norm", Long.MAX_VALUE, Float.POSITIVE_INFINITY, WALL));
  }

  @Test
  void roundTrip() throws IOException {
    Path file;
    List<ScalarEvent> expected;
    try (TensorBoardWriter tb =
        TensorBoardWriter.open(dir.resolve("tb"), InstantSource.fixed(T0))) {
      file = tb.file();
      expected = writeSample(tb);
      tb.flush();
      assertEquals(expected, TensorBoardWriter.readScalars(file), "visible after flush");
      tb.scalar("after", 3, 1);
    }
    String name = file.getFileName().toString();
    long pid = ProcessHandle.current().pid();
    assertTrue(
        name.matches("events\\.out\\.tfevents\\.1700000000\\..+\\." + pid + "\\.troupe"), name);
    List<byte[]> records = TfRecord.readAll(file);
    assertArrayEquals(TensorBoardWriter.versionEvent(WALL), records.get(0));
    assertEquals(expected.size() + 2, records.size());
    assertEquals(
        new ScalarEvent("after", 3, 1f, WALL), TensorBoardWriter.readScalars(file).getLast());
  }

  @Test
  void openWritesTheVersionEventAtOnceAndEachRunGetsItsOwnFile() throws IOException {
    InstantSource clock = InstantSource.fixed(T0);
    try (TensorBoardWriter a = TensorBoardWriter.open(dir, clock);
        TensorBoardWriter b = TensorBoardWriter.open(dir, clock)) {
      assertNotEquals(a.file(), b.file());
      assertTrue(b.file().getFileName().toString().endsWith(".1.troupe"), b.file().toString());
      List<byte[]> records = TfRecord.readAll(a.file());
      assertEquals(1, records.size());
      assertArrayEquals(TensorBoardWriter.versionEvent(WALL), records.get(0));
    }
  }

  @Test
  void misuseFailsClearly() throws IOException {
    TensorBoardWriter tb = TensorBoardWriter.open(dir);
    assertThrows(IllegalArgumentException.class, () -> tb.scalar("", 1, 1));
    assertThrows(NullPointerException.class, () -> tb.scalar(null, 1, 1));
    tb.close();
    tb.close();
    assertThrows(IllegalStateException.class, () -> tb.scalar("loss", 1, 1));
    assertThrows(IllegalStateException.class, tb::flush);
  }

  @Test
  void corruptionIsReportedWithRecordAndOffset() throws IOException {
    Path file;
    try (TensorBoardWriter tb = TensorBoardWriter.open(dir, InstantSource.fixed(T0))) {
      file = tb.file();
      tb.scalar("loss", 1, 2.5);
    }
    byte[] good = Files.readAllBytes(file);
    int second = 12 + TensorBoardWriter.versionEvent(WALL).length + 4; // 40

    byte[] bad = good.clone();
    bad[second + 12 + 3] ^= 0x01;
    Files.write(file, bad);
    IOException e = assertThrows(IOException.class, () -> TensorBoardWriter.readScalars(file));
    assertTrue(e.getMessage().contains("record 1 at byte " + second), e.getMessage());
    assertTrue(e.getMessage().contains("data CRC mismatch"), e.getMessage());

    bad = good.clone();
    bad[second + 1] ^= 0x01;
    Files.write(file, bad);
    e = assertThrows(IOException.class, () -> TensorBoardWriter.readScalars(file));
    assertTrue(e.getMessage().contains("length CRC mismatch"), e.getMessage());

    Files.write(file, Arrays.copyOf(good, good.length - 3));
    e = assertThrows(IOException.class, () -> TensorBoardWriter.readScalars(file));
    assertTrue(e.getMessage().contains("record 1") && e.getMessage().contains("truncated"));
  }

  @Test
  void everySingleByteCorruptionIsDetected() throws IOException {
    Path file;
    try (TensorBoardWriter tb = TensorBoardWriter.open(dir, InstantSource.fixed(T0))) {
      file = tb.file();
      tb.scalar("loss", 1, 2.5);
    }
    byte[] good = Files.readAllBytes(file);
    for (int i = 0; i < good.length; i++) {
      byte[] bad = good.clone();
      bad[i] ^= (byte) 0xA5;
      Files.write(file, bad);
      int at = i;
      assertThrows(
          IOException.class, () -> TensorBoardWriter.readScalars(file), "byte " + at + " flipped");
    }
  }
}
