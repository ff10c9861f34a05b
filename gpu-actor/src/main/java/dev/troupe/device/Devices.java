package dev.troupe.device;

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;

/** Finds the devices a node offers. */
public final class Devices {
  private Devices() {}

  /**
   * The devices {@code spec} asks for. CPU slots share the machine's physical memory equally and
   * get {@code threadsPerDevice} threads each.
   *
   * @throws IllegalArgumentException for CUDA devices: their discovery (through JavaCPP's cudart)
   *     is not built yet
   */
  public static List<DeviceInfo> discover(DeviceSpec spec, int threadsPerDevice) {
    if (spec.kind() == DeviceInfo.Kind.CUDA) {
      throw new IllegalArgumentException(
          "CUDA device discovery is not built yet; use --devices cpu:N");
    }
    if (threadsPerDevice < 1) {
      throw new IllegalArgumentException("threads per device must be at least 1");
    }
    if (spec.count() == 0) return List.of(); // --devices none
    long share = physicalMemory() / spec.count();
    List<DeviceInfo> out = new ArrayList<>();
    for (int i = 0; i < spec.count(); i++) {
      out.add(new DeviceInfo("cpu:" + i, DeviceInfo.Kind.CPU, share, threadsPerDevice));
    }
    return out;
  }

  /** Default threads per CPU slot: the cores divided among the slots, at least one. */
  public static int defaultThreads(DeviceSpec spec) {
    int cores = Runtime.getRuntime().availableProcessors();
    return Math.max(1, cores / Math.max(1, spec.count()));
  }

  static long physicalMemory() {
    return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getTotalMemorySize();
  }
}
