package dev.troupe.pipeline.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class PlanTest {
  @ParameterizedTest(name = "{0} stages of {1} layers")
  @CsvSource(
      delimiter = '|',
      textBlock =
          """
          1 | 8  | 0,8
          2 | 8  | 0,4,8
          3 | 8  | 0,2,5,8
          4 | 22 | 0,5,11,16,22
          8 | 8  | 0,1,2,3,4,5,6,7,8
          """)
  void evenCutsAsEquallyAsTheLayersAllow(int pp, int layers, String expected) {
    Plan p = Plan.even(pp, 1, 1, layers);
    int[] b = new int[pp + 1];
    String[] parts = expected.split(",");
    for (int i = 0; i <= pp; i++) b[i] = Integer.parseInt(parts[i]);
    assertArrayEquals(b, p.boundaries());
    assertEquals(layers, p.layers());
    for (int s = 0; s < pp; s++) {
      int n = p.endLayer(s) - p.firstLayer(s);
      assertEquals(layers / pp, n, 1, "stage " + s);
    }
  }

  @Test
  void evenRefusesMoreStagesThanLayers() {
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> Plan.even(9, 1, 1, 8));
    assertEquals("cannot cut 8 decoder layers into 9 pipeline stages", e.getMessage());
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(
      delimiter = '|',
      textBlock =
          """
          0 | 1 | 1 | 0      | bad plan 0×1×1
          1 | 0 | 1 | 0,4    | bad plan 1×0×1
          1 | 1 | 0 | 0,4    | bad plan 1×1×0
          2 | 1 | 1 | 0,4    | a plan of 2 stages needs 3 boundaries starting at 0
          1 | 1 | 1 | 1,4    | a plan of 1 stages needs 2 boundaries starting at 0
          2 | 1 | 1 | 0,0,4  | stage 0 holds no layers: boundaries [0, 0, 4]
          2 | 1 | 1 | 0,5,4  | stage 1 holds no layers: boundaries [0, 5, 4]
          """)
  void validation(int pp, int tp, int dp, String boundaries, String message) {
    String[] parts = boundaries.split(",");
    int[] b = new int[parts.length];
    for (int i = 0; i < b.length; i++) b[i] = Integer.parseInt(parts[i]);
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> new Plan(pp, tp, dp, b));
    assertEquals(message, e.getMessage());
  }

  @Test
  void boundariesAreCopiedInAndOut() {
    int[] b = {0, 3, 8};
    Plan p = new Plan(2, 1, 1, b);
    b[1] = 7;
    assertEquals(3, p.endLayer(0));
    p.boundaries()[1] = 7;
    assertEquals(3, p.firstLayer(1));
  }

  @ParameterizedTest(name = "{0}×{1}×{2}")
  @CsvSource({"1,1,1", "2,1,1", "1,2,1", "1,1,2", "2,2,2", "3,2,4", "4,1,3"})
  void rankNumberingRoundTrips(int pp, int tp, int dp) {
    Plan p = Plan.even(pp, tp, dp, 8);
    assertEquals(pp * tp * dp, p.worldSize());
    for (int i = 0; i < p.worldSize(); i++) {
      Plan.Rank r = p.rank(i);
      assertEquals(i, r.index());
      assertEquals(i, p.rankOf(r.stage(), r.shard(), r.replica()));
      assertEquals(p.rankOf(r.stage(), 0, r.replica()) + r.shard(), i, "shards are neighbours");
    }
    assertThrows(IllegalArgumentException.class, () -> p.rank(p.worldSize()));
    assertThrows(IllegalArgumentException.class, () -> p.rank(-1));
  }

  @Test
  void singleToStringAndEquality() {
    assertEquals(new Plan(1, 1, 1, new int[] {0, 8}), Plan.single(8));
    assertEquals("pp=2 tp=1 dp=2 stages [0,4) [4,8)", Plan.even(2, 1, 2, 8).toString());
    assertEquals(Plan.even(2, 1, 2, 8).hashCode(), Plan.even(2, 1, 2, 8).hashCode());
    assertNotEquals(Plan.even(2, 1, 2, 8), Plan.even(2, 1, 1, 8));
    assertNotEquals(Plan.even(2, 1, 1, 8), new Plan(2, 1, 1, new int[] {0, 5, 8}));
  }
}
