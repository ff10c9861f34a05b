package dev.troupe.pipeline.train;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.troupe.pipeline.job.Schedule;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class LrScheduleAndScalerTest {
  @ParameterizedTest(name = "{0} step {1} of {2}, warm-up {3}: {4}")
  @CsvSource({
    "CONSTANT, 0, 100, 0, 1.0",
    "CONSTANT, 0, 100, 10, 0.0",
    "CONSTANT, 5, 100, 10, 0.5",
    "CONSTANT, 10, 100, 10, 1.0",
    "LINEAR, 0, 100, 0, 1.0",
    "LINEAR, 50, 100, 0, 0.5",
    "LINEAR, 99, 100, 0, 0.01",
    "LINEAR, 5, 100, 10, 0.5",
    "LINEAR, 55, 100, 10, 0.5",
    "COSINE, 0, 100, 0, 1.0",
    "COSINE, 50, 100, 0, 0.5",
    "COSINE, 100, 100, 0, 0.0",
    "COSINE, 55, 100, 10, 0.5",
  })
  void multipliersAsTransformersDefinesThem(
      Schedule s, long step, long total, long warmup, double want) {
    assertEquals(want, LrSchedule.multiplier(s, step, total, warmup), 1e-12);
  }

  @Test
  void lossScalerFollowsGradScaler() {
    LossScaler s = LossScaler.initial();
    assertEquals(65536.0, s.scale());
    s = s.update(true);
    assertEquals(new LossScaler(32768.0, 0), s);
    for (int i = 0; i < 1999; i++) s = s.update(false);
    assertEquals(new LossScaler(32768.0, 1999), s);
    s = s.update(false);
    assertEquals(new LossScaler(65536.0, 0), s, "doubled after 2000 finite steps");
    s = s.update(false).update(true);
    assertEquals(new LossScaler(32768.0, 0), s, "an overflow resets the growth count");
  }
}
