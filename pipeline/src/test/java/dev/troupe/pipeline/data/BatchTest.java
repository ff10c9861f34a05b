package dev.troupe.pipeline.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.junit.jupiter.api.Test;

class BatchTest {
  private static final long I = Example.IGNORE;

  @Test
  void padsRowsOnTheRight() {
    Example a = new Example(new long[] {5, 6, 7}, new long[] {I, 6, 7});
    Example b = new Example(new long[] {8, 9, 10, 11, 12}, new long[] {8, I, 10, 11, I});
    Batch batch = Batch.of(List.of(a, b), 6, 0);
    assertEquals(2, batch.rows());
    assertEquals(6, batch.seqLen());
    assertArrayEquals(new long[] {5, 6, 7, 0, 0, 0, 8, 9, 10, 11, 12, 0}, batch.inputIds());
    assertArrayEquals(new long[] {I, 6, 7, I, I, I, 8, I, 10, 11, I, I}, batch.labels());
    assertEquals(4, batch.labelTokens(), "row 2 position 0 is not counted");
    assertEquals(a.labelCount() + b.labelCount(), batch.labelTokens());
  }

  @Test
  void fullRowsAndPadId() {
    Example a = new Example(new long[] {1, 2}, new long[] {1, 2});
    Batch batch = Batch.of(List.of(a, a, a), 2, 99);
    assertArrayEquals(new long[] {1, 2, 1, 2, 1, 2}, batch.inputIds());
    assertEquals(3, batch.labelTokens());
    Batch padded = Batch.of(List.of(a), 4, 99);
    assertArrayEquals(new long[] {1, 2, 99, 99}, padded.inputIds());
    assertArrayEquals(new long[] {1, 2, I, I}, padded.labels());
    assertEquals(padded, new Batch(1, 4, padded.inputIds(), padded.labels()));
  }

  @Test
  void rejectsBadInput() {
    Example a = new Example(new long[] {1, 2, 3}, new long[] {1, 2, 3});
    assertThrows(IllegalArgumentException.class, () -> Batch.of(List.of(a), 2, 0));
    assertThrows(IllegalArgumentException.class, () -> Batch.of(List.of(), 2, 0));
    assertThrows(IllegalArgumentException.class, () -> Batch.of(List.of(a), 4, -1));
    assertThrows(IllegalArgumentException.class, () -> Batch.of(List.of(a), 0, 0));
    assertThrows(IllegalArgumentException.class, () -> new Batch(2, 2, new long[4], new long[3]));
    assertThrows(IllegalArgumentException.class, () -> new Example(new long[2], new long[3]));
  }

  @Test
  void exampleCountsLabelsAfterPositionZeroAndIsImmutable() {
    long[] ids = {4, 5, 6, 7};
    Example ex = new Example(ids, new long[] {4, I, 6, 7});
    assertEquals(2, ex.labelCount());
    assertEquals(0, new Example(new long[] {4}, new long[] {4}).labelCount());
    ids[0] = 99;
    ex.inputIds()[1] = 99;
    assertArrayEquals(new long[] {4, 5, 6, 7}, ex.inputIds());
    assertEquals(4, ex.length());
  }
}
