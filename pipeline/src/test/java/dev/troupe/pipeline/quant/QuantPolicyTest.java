package dev.troupe.pipeline.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The policy, one table row per situation. */
class QuantPolicyTest {
  private static final QuantPolicy.Settings NO_BUDGET =
      new QuantPolicy.Settings(0.05, 0.01, 2, 0, QuantFormat.NF4);

  /**
   * Layers as {@code name:format:error:lowerError:calm:bytes:lowerBytes} separated by spaces; the
   * expected outcome as {@code name:toFormat:action} separated by spaces.
   */
  @ParameterizedTest(name = "{0}")
  @CsvSource(
      delimiter = '|',
      textBlock =
          """
          below the upper threshold: kept        | 0     | a:int8:0.04:0.2:0:100:50                       | a:int8:keep
          above it: 4-bit to int8                | 0     | a:nf4:0.08:NaN:0:50:50                         | a:int8:promote
          above it: int8 to compute dtype        | 0     | a:int8:0.06:0.2:0:100:50                       | a:none:promote
          compute dtype is never promoted        | 0     | a:none:0.9:0.001:5:200:100                     | a:none:keep
          int4 promotes to int8 too              | 0     | a:int4:0.5:NaN:0:50:50                         | a:int8:promote
          only the noisy layer moves             | 0     | a:int8:0.001:0.2:0:100:50 b:nf4:0.3:NaN:0:50:50 | a:int8:keep b:int8:promote
          calm but no budget: kept               | 0     | a:int8:0.001:0.005:9:100:50                    | a:int8:keep
          over budget, calm long enough: demoted | 120   | a:int8:0.001:0.005:2:100:50 b:int8:0.001:0.2:9:100:50 | a:nf4:demote b:int8:keep
          over budget, not calm long enough      | 120   | a:int8:0.001:0.005:1:100:50                    | a:int8:keep
          lowest lower-error first, stop at budget | 300 | a:none:0:0.004:3:200:100 b:none:0:0.002:3:200:100 | a:none:keep b:int8:demote
          both when one is not enough            | 210   | a:none:0:0.004:3:200:100 b:none:0:0.002:3:200:100 | a:int8:demote b:int8:demote
          within budget: nothing demoted         | 1000  | a:none:0:0.002:3:200:100                       | a:none:keep
          4-bit is the floor                     | 10    | a:nf4:0.001:NaN:9:50:50                        | a:nf4:keep
          a promoted layer is not demoted        | 10    | a:int8:0.07:0.001:9:100:50                     | a:none:promote
          """)
  void decides(String situation, long budget, String layers, String expected) {
    QuantPolicy.Settings s =
        budget == 0 ? NO_BUDGET : new QuantPolicy.Settings(0.05, 0.01, 2, budget, QuantFormat.NF4);
    List<QuantPolicy.Layer> in = new ArrayList<>();
    for (String l : layers.trim().split("\\s+")) {
      String[] f = l.split(":");
      in.add(
          new QuantPolicy.Layer(
              f[0],
              QuantFormat.parse(f[1]),
              Double.parseDouble(f[2]),
              Double.parseDouble(f[3]),
              Integer.parseInt(f[4]),
              Long.parseLong(f[5]),
              Long.parseLong(f[6])));
    }
    List<String> got = new ArrayList<>();
    for (QuantPolicy.Decision d : QuantPolicy.decide(s, in)) {
      got.add(d.name() + ":" + d.to().label() + ":" + d.action());
    }
    assertEquals(List.of(expected.trim().split("\\s+")), got, situation);
  }

  @ParameterizedTest
  @CsvSource({
    "0, 0.01, 2, 0, nf4",
    "0.05, 0.05, 2, 0, nf4",
    "0.05, -1, 2, 0, nf4",
    "0.05, 0.01, 0, 0, nf4",
    "0.05, 0.01, 2, -1, nf4",
    "0.05, 0.01, 2, 0, int8"
  })
  void rejectsInconsistentSettings(
      double promote, double demote, int after, long budget, String fourBit) {
    assertThrows(
        IllegalArgumentException.class,
        () -> new QuantPolicy.Settings(promote, demote, after, budget, QuantFormat.parse(fourBit)));
  }
}
