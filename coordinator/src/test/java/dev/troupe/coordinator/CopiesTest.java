package dev.troupe.coordinator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.device.RankProtocol.Copy;
import dev.troupe.persistence.TensorBytes;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Which copies of the trainable state a run can start from ({@link Copy#covering}). */
class CopiesTest {
  private static Copy copy(int first, int end, long steps) {
    TensorBytes t = new TensorBytes("F32", new long[] {1}, new byte[4]);
    return new Copy(first, end, steps, Map.of("layers." + first + ".x", t), 7, 1024, 3, "");
  }

  @Test
  void copiesOfEveryLayerAtTheCommittedStepAreMerged() {
    var c = Copy.covering(List.of(copy(0, 2, 16), copy(2, 4, 16), copy(2, 4, 15)), 16, 4);
    assertTrue(c.isPresent());
    assertEquals(2, c.get().tensors().size());
    assertEquals(16, c.get().steps());
    assertEquals(7, c.get().optimizerStep());
    assertEquals(1024, c.get().lossScale());
    assertEquals(3, c.get().growthTracker());
  }

  @Test
  void copiesFromAnotherPlansStagesCoverTooWhenTheyFitTogether() {
    assertTrue(Copy.covering(List.of(copy(0, 1, 9), copy(1, 4, 9)), 9, 4).isPresent());
  }

  @Test
  void aLayerWithoutACopyAtTheCommittedStepMeansTheCheckpoint() {
    assertTrue(Copy.covering(List.of(copy(0, 2, 16), copy(2, 4, 15)), 16, 4).isEmpty());
    assertTrue(Copy.covering(List.of(copy(0, 2, 16)), 16, 4).isEmpty());
    assertTrue(Copy.covering(List.of(), 16, 4).isEmpty());
  }

  @Test
  void theLostDeviceIsReadBackFromTheEndReason() {
    assertEquals(
        "pekko://troupe@h:1/user/device-cpu-0",
        PlanRunProtocol.lostDevice("device pekko://troupe@h:1/user/device-cpu-0 left the cluster"));
    assertEquals(null, PlanRunProtocol.lostDevice("rank 1: out of memory"));
  }
}
