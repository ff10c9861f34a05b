package dev.troupe.pipeline.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.troupe.pipeline.lora.LoraKey;
import dev.troupe.pipeline.lora.LoraTarget;
import org.junit.jupiter.api.Test;

class QuantStateTest {
  @Test
  void summaryCountsTheLayersInEachFormatMostPreciseFirst() {
    QuantState s = QuantState.initial(2, QuantFormat.INT4);
    assertEquals("14 int4", s.summary());
    s.update(new LoraKey(1, LoraTarget.DOWN_PROJ), QuantFormat.INT8, 0);
    s.update(new LoraKey(0, LoraTarget.Q_PROJ), QuantFormat.NONE, 0);
    s.update(new LoraKey(1, LoraTarget.Q_PROJ), QuantFormat.NONE, 0);
    assertEquals("2 none (compute dtype), 1 int8, 11 int4", s.summary());
  }
}
