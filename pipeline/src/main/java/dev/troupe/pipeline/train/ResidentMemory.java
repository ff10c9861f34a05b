package dev.troupe.pipeline.train;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The process's resident set size now and at its peak, from /proc (Linux); -1 where unreadable. */
public final class ResidentMemory {
  private static final Path STATM = Path.of("/proc/self/statm");

  private ResidentMemory() {}

  public static long bytes() {
    try {
      String[] f = Files.readString(STATM).trim().split("\\s+");
      return Long.parseLong(f[1]) * 4096L; // pages; 4 KiB on x86-64 Linux
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }

  /** The largest resident set size so far (VmHWM). */
  public static long peakBytes() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith("VmHWM:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024L;
      }
      return -1;
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }
}
