package dev.troupe.device;

/**
 * One device a node offers: what the planner needs to know of it.
 *
 * @param id {@code cpu:0}, {@code cuda:1}, ...
 * @param kind CPU or CUDA
 * @param memoryBytes memory the device may use: a CPU slot's share of the machine's physical memory
 * @param threads compute threads of a CPU slot (libtorch intra-op threads)
 */
public record DeviceInfo(String id, Kind kind, long memoryBytes, int threads) {
  /** Device kinds. */
  public enum Kind {
    CPU,
    CUDA
  }
}
