package dev.troupe.device;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Which devices a node offers, as {@code --devices} says: {@code cpu} (one CPU slot), {@code cpu:N}
 * (N slots, each a device actor with its own threads), {@code cuda} (every CUDA device), {@code
 * cuda:0,1} (those devices) or {@code none} (a node that only coordinates).
 *
 * @param kind CPU or CUDA
 * @param count CPU slots (CPU only)
 * @param cudaIds the CUDA device ordinals asked for; empty for all (CUDA only)
 */
public record DeviceSpec(DeviceInfo.Kind kind, int count, List<Integer> cudaIds) {
  public DeviceSpec {
    cudaIds = List.copyOf(cudaIds);
  }

  /** {@code n} CPU slots. */
  public static DeviceSpec cpu(int n) {
    return new DeviceSpec(DeviceInfo.Kind.CPU, n, List.of());
  }

  /**
   * Parses a {@code --devices} value.
   *
   * @throws IllegalArgumentException naming the value and what is accepted
   */
  public static DeviceSpec parse(String text) {
    String t = text == null ? "" : text.strip().toLowerCase(Locale.ROOT);
    String expected = " (expected cpu, cpu:N, cuda, cuda:0,1 or none)";
    if (t.equals("none")) return new DeviceSpec(DeviceInfo.Kind.CPU, 0, List.of());
    if (t.equals("cpu")) return cpu(1);
    if (t.equals("cuda")) return new DeviceSpec(DeviceInfo.Kind.CUDA, 0, List.of());
    if (t.startsWith("cpu:")) {
      int n;
      try {
        n = Integer.parseInt(t.substring(4));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("devices '" + text + "': not a slot count" + expected);
      }
      if (n < 1) {
        throw new IllegalArgumentException("devices '" + text + "': at least one CPU slot");
      }
      return cpu(n);
    }
    if (t.startsWith("cuda:")) {
      List<Integer> ids = new ArrayList<>();
      for (String part : t.substring(5).split(",", -1)) {
        int id;
        try {
          id = Integer.parseInt(part.strip());
        } catch (NumberFormatException e) {
          throw new IllegalArgumentException(
              "devices '" + text + "': '" + part + "' is not a device number" + expected);
        }
        if (id < 0 || ids.contains(id)) {
          throw new IllegalArgumentException(
              "devices '" + text + "': device " + id + " is negative or listed twice");
        }
        ids.add(id);
      }
      return new DeviceSpec(DeviceInfo.Kind.CUDA, ids.size(), ids);
    }
    throw new IllegalArgumentException("devices '" + text + "' not understood" + expected);
  }
}
