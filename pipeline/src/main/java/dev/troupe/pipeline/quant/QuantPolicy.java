package dev.troupe.pipeline.quant;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Decides, from one quantization-error check, which layers change precision. Pure: the same
 * measurements give the same decisions.
 *
 * <ul>
 *   <li>Promote (4-bit → INT8 → compute dtype) every quantized layer whose output error exceeds
 *       {@code promoteAbove}.
 *   <li>Then, only while the frozen weights hold more than {@code memoryBudgetBytes} (0 = no
 *       budget: never demote), demote layers one level (compute dtype → INT8 → the 4-bit format),
 *       smallest error at the lower level first, among those whose error at the lower level has
 *       stayed below {@code demoteBelow} for {@code demoteAfter} consecutive checks (this one
 *       included); a layer just promoted is not demoted.
 * </ul>
 *
 * Judging a demotion by the error the layer would have at the lower level (not its current one)
 * keeps a promoted layer from being demoted again by the next check.
 */
public final class QuantPolicy {
  private QuantPolicy() {}

  /**
   * The thresholds.
   *
   * @param fourBit the 4-bit format demotions from INT8 go to (INT4 or NF4)
   */
  public record Settings(
      double promoteAbove,
      double demoteBelow,
      int demoteAfter,
      long memoryBudgetBytes,
      QuantFormat fourBit) {
    public Settings {
      if (!(promoteAbove > 0)) throw new IllegalArgumentException("promoteAbove must be > 0");
      if (!(demoteBelow >= 0 && demoteBelow < promoteAbove)) {
        throw new IllegalArgumentException("demoteBelow must be >= 0 and below promoteAbove");
      }
      if (demoteAfter < 1) throw new IllegalArgumentException("demoteAfter must be >= 1");
      if (memoryBudgetBytes < 0) throw new IllegalArgumentException("memory budget must be >= 0");
      if (fourBit != QuantFormat.INT4 && fourBit != QuantFormat.NF4) {
        throw new IllegalArgumentException("fourBit must be int4 or nf4");
      }
    }
  }

  /**
   * One layer as measured.
   *
   * @param error relative output error at its current format
   * @param lowerError relative output error it would have one level lower (NaN at the lowest)
   * @param calmChecks consecutive checks, this one included, with {@code lowerError} below the
   *     demotion threshold
   * @param bytes bytes its weight holds now
   * @param lowerBytes bytes it would hold one level lower
   */
  public record Layer(
      String name,
      QuantFormat format,
      double error,
      double lowerError,
      int calmChecks,
      long bytes,
      long lowerBytes) {}

  /** What happens to a layer: its format before and after, and why. */
  public record Decision(String name, QuantFormat from, QuantFormat to, String action) {
    public boolean changes() {
      return from != to;
    }
  }

  public static List<Decision> decide(Settings s, List<Layer> layers) {
    List<Decision> out = new ArrayList<>();
    long total = 0;
    for (Layer l : layers) {
      boolean promote = l.format() != QuantFormat.NONE && l.error() > s.promoteAbove();
      QuantFormat to = promote ? l.format().promoted() : l.format();
      out.add(new Decision(l.name(), l.format(), to, promote ? "promote" : "keep"));
      // a promoted layer's size is not known before it is re-quantized: count it as the next
      // level's, estimated from the ratio of bits
      total += promote ? l.bytes() * to.bits() / l.format().bits() : l.bytes();
    }
    if (s.memoryBudgetBytes() == 0 || total <= s.memoryBudgetBytes()) return out;
    List<Integer> candidates = new ArrayList<>();
    for (int i = 0; i < layers.size(); i++) {
      Layer l = layers.get(i);
      if (out.get(i).changes()) continue;
      if (l.format().demoted(s.fourBit()) == l.format()) continue;
      if (l.calmChecks() >= s.demoteAfter() && l.lowerError() < s.demoteBelow()) candidates.add(i);
    }
    candidates.sort(
        Comparator.comparingDouble((Integer i) -> layers.get(i).lowerError())
            .thenComparing(i -> layers.get(i).name()));
    for (int i : candidates) {
      if (total <= s.memoryBudgetBytes()) break;
      Layer l = layers.get(i);
      out.set(i, new Decision(l.name(), l.format(), l.format().demoted(s.fourBit()), "demote"));
      total += l.lowerBytes() - l.bytes();
    }
    return out;
  }
}
