package dev.troupe.pipeline.engine;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.bytedeco.javacpp.Pointer;

/** The process's native allocator: which one it is, and trimming glibc's heap where it is glibc. */
public final class NativeHeap {
  private NativeHeap() {}

  private static final boolean GLIBC = allocator().equals("glibc");

  /**
   * The native allocator this process runs with: the file name of a preloaded tcmalloc, jemalloc or
   * mimalloc found among its mapped libraries (bin/troupe preloads tcmalloc where it is installed),
   * "glibc" where none is, "unknown" where /proc/self/maps is unreadable.
   */
  public static String allocator() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/maps"))) {
        int slash = line.lastIndexOf('/');
        if (slash < 0) continue;
        String file = line.substring(slash + 1);
        if (file.startsWith("libtcmalloc")
            || file.startsWith("libjemalloc")
            || file.startsWith("libmimalloc")) {
          return file;
        }
      }
      return "glibc";
    } catch (IOException | RuntimeException e) {
      return "unknown";
    }
  }

  /**
   * Sets glibc's heap up once, on this thread, where another allocator is preloaded. glibc does
   * that lazily in the first {@code malloc_trim}, and two threads making that first call together
   * crashed the process (SIGSEGV inside {@code malloc_trim}). JavaCPP calls {@code malloc_trim}
   * itself ({@code Pointer.trimMemory}) on any thread whose allocation finds the process above
   * {@code maxPhysicalBytes}; after this those calls are safe. {@link Torch}'s static initializer
   * calls it, so it runs once, before libtorch is used.
   */
  static void prepare() {
    if (!GLIBC) Pointer.trimMemory();
  }

  /**
   * Gives the free memory glibc's malloc keeps back to the system ({@code malloc_trim}), where
   * glibc's malloc is the allocator; elsewhere does nothing. Under a preloaded allocator glibc's
   * heap is unused, so there is nothing to give back. (Its lazy set-up in the first {@code
   * malloc_trim} crashed a suite run under tcmalloc when two pipeline ranks loaded their stages at
   * once; see {@link #prepare}.)
   */
  public static void trim() {
    if (GLIBC) Pointer.trimMemory();
  }
}
