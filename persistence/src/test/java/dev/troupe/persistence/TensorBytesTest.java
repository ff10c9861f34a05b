package dev.troupe.persistence;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

/** {@link TensorBytes}: what it accepts, what it refuses and how, and equality by content. */
class TensorBytesTest {
  private static final Map<String, Integer> SIZES =
      Map.of(
          "F64", 8, "F32", 4, "F16", 2, "BF16", 2, "I64", 8, "I32", 4, "I8", 1, "U8", 1, "BOOL", 1);

  private static String refused(String dtype, long[] shape, byte[] data) {
    return assertThrows(IllegalArgumentException.class, () -> new TensorBytes(dtype, shape, data))
        .getMessage();
  }

  @Test
  void everyDtypeTakesShapeTimesElementSizeBytes() {
    SIZES.forEach(
        (dtype, size) -> {
          assertEquals(size, TensorBytes.elementSize(dtype), dtype);
          TensorBytes t = new TensorBytes(dtype, new long[] {2, 3}, new byte[6 * size]);
          assertEquals(6, t.elements(), dtype);
          String m = refused(dtype, new long[] {2, 3}, new byte[6 * size + 1]);
          assertTrue(m.contains("needs " + 6 * size + " bytes, got " + (6 * size + 1)), m);
        });
  }

  @Test
  void scalarsAndEmptyTensors() {
    assertEquals(1, new TensorBytes("F32", new long[0], new byte[4]).elements());
    assertEquals(0, new TensorBytes("F32", new long[] {0, 5}, new byte[0]).elements());
    // a zero dimension makes the tensor empty even when the others multiply past a long
    assertEquals(
        0,
        new TensorBytes("F64", new long[] {Long.MAX_VALUE, Long.MAX_VALUE, 0}, new byte[0])
            .elements());
  }

  @Test
  void badDtypesShapesAndDataAreNamed() {
    String dtype = refused("Q4", new long[] {1}, new byte[1]);
    assertTrue(dtype.contains("'Q4'") && dtype.contains("BF16"), dtype);
    assertTrue(refused(null, new long[] {1}, new byte[1]).contains("'null'"));
    assertTrue(refused("f32", new long[] {1}, new byte[4]).contains("'f32'"));
    String negative = refused("U8", new long[] {2, -1}, new byte[0]);
    assertTrue(
        negative.contains("[2, -1]") && negative.contains("dimension 1 is negative"), negative);
    assertTrue(refused("U8", null, new byte[0]).contains("shape is missing"));
    assertTrue(refused("U8", new long[] {1}, null).contains("data is missing"));
    String huge = refused("F32", new long[] {1L << 40, 1L << 40}, new byte[0]);
    assertTrue(huge.contains("more bytes than a long can count"), huge);
    assertThrows(IllegalArgumentException.class, () -> TensorBytes.elementSize("F8"));
  }

  @Test
  void equalityIsByContent() {
    TensorBytes a = new TensorBytes("I32", new long[] {2}, new byte[] {1, 0, 0, 0, 2, 0, 0, 0});
    TensorBytes b = new TensorBytes("I32", new long[] {2}, new byte[] {1, 0, 0, 0, 2, 0, 0, 0});
    assertEquals(a, b);
    assertEquals(a.hashCode(), b.hashCode());
    assertNotEquals(a, new TensorBytes("I32", new long[] {2}, new byte[] {1, 0, 0, 0, 3, 0, 0, 0}));
    assertNotEquals(a, new TensorBytes("F32", new long[] {2}, a.data()));
    assertNotEquals(a, new TensorBytes("I32", new long[] {1, 2}, a.data()));
    assertArrayEquals(new long[] {2}, a.shape());
    assertEquals("TensorBytes[I32[2], 8 bytes]", a.toString());
  }
}
