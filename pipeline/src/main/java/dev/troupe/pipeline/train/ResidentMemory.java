package dev.troupe.pipeline.train;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The process's resident set size, from /proc (Linux); -1 where it cannot be read. */
final class ResidentMemory {
  private static final Path STATM = Path.of("/proc/self/statm");

  private ResidentMemory() {}

  static long bytes() {
    try {
      String[] f = Files.readString(STATM).trim().split("\\s+");
      return Long.parseLong(f[1]) * 4096L; // pages; 4 KiB on x86-64 Linux
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }
}
