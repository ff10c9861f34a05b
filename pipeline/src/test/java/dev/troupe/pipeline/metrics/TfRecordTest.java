package dev.troupe.pipeline.metrics;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

/** Known answers; the expected bytes were computed by an independent bitwise CRC32C in Python. */
class TfRecordTest {
  private static final HexFormat HEX = HexFormat.of();

  @Test
  void crc32cKnownAnswerAndMask() {
    byte[] check = "123456789".getBytes(StandardCharsets.US_ASCII);
    assertEquals(0xE3069283, TfRecord.crc32c(check, 0, check.length));
    // ((0xE3069283 >>> 15) | (0xE3069283 << 17)) + 0xa282ead8 = 0x2507C60D + 0xA282EAD8
    assertEquals(0xC78AB0E5, TfRecord.mask(0xE3069283));
    assertEquals(0xa282ead8, TfRecord.mask(0));
  }

  @Test
  void scalarEventBytes() {
    // Event { wall_time: 1.5, step: 300, summary { value { tag: "loss", simple_value: 2.5 } } }
    String expected =
        "09"
            + "000000000000f83f" // field 1, fixed64: 1.5
            + "10"
            + "ac02" // field 2, varint: 300
            + "2a0d" // field 5, 13 bytes: Summary
            + "0a0b" // Summary field 1, 11 bytes: Value
            + "0a04"
            + "6c6f7373" // Value field 1: "loss"
            + "15"
            + "00002040"; // Value field 2, fixed32: 2.5f
    assertEquals(expected, HEX.formatHex(TensorBoardWriter.scalarEvent(1.5, 300, "loss", 2.5f)));
  }

  @Test
  void stepZeroIsLeftOutAsProto3Does() {
    assertEquals(
        "09000000000000f83f" + "2a0d0a0b0a046c6f73731500002040",
        HEX.formatHex(TensorBoardWriter.scalarEvent(1.5, 0, "loss", 2.5f)));
  }

  @Test
  void negativeStepIsATenByteVarint() {
    assertEquals(
        "09000000000000f83f" + "10ffffffffffffffffff01" + "2a0a0a080a01781500000000",
        HEX.formatHex(TensorBoardWriter.scalarEvent(1.5, -1, "x", 0f)));
  }

  @Test
  void versionEventBytes() {
    assertEquals(
        "09000000000000f83f" + "1a0d" + HEX.formatHex("brain.Event:2".getBytes()),
        HEX.formatHex(TensorBoardWriter.versionEvent(1.5)));
  }

  @Test
  void recordFraming() {
    byte[] data = TensorBoardWriter.scalarEvent(1.5, 300, "loss", 2.5f);
    assertArrayEquals(
        HEX.parseHex(
            "1b00000000000000" // length 27, uint64 LE
                + "1a0d9e13" // masked CRC32C of the length: 0x139e0d1a
                + "09000000000000f83f10ac022a0d0a0b0a046c6f73731500002040" // the event
                + "68997c51"), // masked CRC32C of the data: 0x517c9968
        TfRecord.frame(data));
  }
}
