package dev.troupe.pipeline.engine;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Predicate;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;

/**
 * Which OpenBLAS serves libtorch's FP32 products: the one JavaCPP bundles (0.3.31), or the
 * system's, loaded into the JVM's global symbol scope before libtorch so that libtorch's BLAS
 * symbols bind to it ({@link Natives}). Chosen by {@code TROUPE_BLAS}: {@code auto} (the default),
 * {@code bundled}, or the path of a {@code libopenblas.so.0}.
 *
 * <p>Why: on the 2-core Intel AVX-512 machines of the project, Debian's OpenBLAS 0.3.21 (pthreads,
 * the one Debian's python3-torch uses) made bench-m lora-fp32 4-7% faster than the bundled one,
 * which left lora-fp32 behind the PyTorch peer (see docs/architecture.md, "Where lora-fp32's gap
 * is"). Both pick the same SkylakeX kernels there; the difference is in how their idle workers wait
 * among libtorch's OpenMP threads. On AMD machines Debian's 0.3.21 picks Haswell kernels and was
 * 30% slower, so {@code auto} takes the system's only on an Intel CPU with AVX-512 where Debian's
 * pthreads build is installed, and the bundled one everywhere else.
 *
 * <p>Only the JVM loads it: preloading it with {@code LD_PRELOAD} instead (tried) put it, and its
 * threads, into every process the JVM started, and the tests' bash subprocesses hung.
 */
public final class BlasLibrary {
  private BlasLibrary() {}

  /** Debian's (and Ubuntu's) pthreads build of OpenBLAS, package libopenblas0-pthread. */
  static final Path DEBIAN_PTHREADS =
      Path.of("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0");

  /** The environment variable that chooses. */
  public static final String SETTING = "TROUPE_BLAS";

  /**
   * The system OpenBLAS to load before libtorch, or null for the bundled one.
   *
   * @param setting {@code TROUPE_BLAS}'s value; null or blank means {@code auto}
   * @param cpuinfo the text of {@code /proc/cpuinfo} ("" where unreadable)
   * @param linuxX86 whether this is JavaCPP's {@code linux-x86_64} platform
   * @param isFile whether a path names a regular file
   * @throws IllegalArgumentException where the setting names a file that is not there
   */
  static Path choose(String setting, String cpuinfo, boolean linuxX86, Predicate<Path> isFile) {
    String s = setting == null ? "" : setting.strip();
    if (isAuto(setting)) {
      boolean intel = cpuinfo.contains("GenuineIntel");
      boolean avx512 = cpuinfo.lines().anyMatch(l -> l.startsWith("flags") && hasFlag(l));
      return linuxX86 && intel && avx512 && isFile.test(DEBIAN_PTHREADS) ? DEBIAN_PTHREADS : null;
    }
    if (s.equals("bundled")) return null;
    Path p = Path.of(s);
    if (!isFile.test(p)) {
      throw new IllegalArgumentException(
          SETTING + "=" + s + ": no such file (auto, bundled, or the path of a libopenblas.so.0)");
    }
    return p;
  }

  private static boolean isAuto(String setting) {
    return setting == null || setting.isBlank() || setting.strip().equals("auto");
  }

  private static boolean hasFlag(String flagsLine) {
    return List.of(flagsLine.split("\\s+")).contains("avx512f");
  }

  /** {@link #choose} for this process: its environment and CPU. */
  static Path choose() {
    String cpuinfo;
    try {
      cpuinfo = Files.readString(Path.of("/proc/cpuinfo"));
    } catch (IOException | RuntimeException e) {
      cpuinfo = "";
    }
    return choose(
        System.getenv(SETTING),
        cpuinfo,
        Loader.getPlatform().equals("linux-x86_64"),
        Files::isRegularFile);
  }

  /**
   * Loads the system OpenBLAS {@link #choose()} picks, if any, into the global symbol scope; {@link
   * Natives} calls it before it loads libtorch, so that libtorch's BLAS symbols bind to it rather
   * than to the bundled one. Where {@code TROUPE_BLAS} named the library, a failure to load it is
   * an error; where {@code auto} chose it, a note on standard error, and the bundled one serves.
   */
  static void loadChosen() {
    Path library = choose();
    if (library == null) return;
    try {
      Loader.loadGlobal(library.toString());
    } catch (UnsatisfiedLinkError e) {
      String setting = System.getenv(SETTING);
      if (!isAuto(setting)) {
        throw new IllegalStateException(
            SETTING + "=" + setting + ": cannot load it: " + e.getMessage(), e);
      }
      System.err.println(
          "troupe: note: cannot load "
              + library
              + " ("
              + e.getMessage()
              + "); using the bundled"
              + " OpenBLAS");
    }
  }

  /**
   * The file that holds the {@code sgemm_} this process resolves first, which is the one libtorch's
   * products call (the global scope comes first in symbol lookup): read from {@code
   * /proc/self/maps}. "unknown" where the symbol or the maps are not there.
   */
  public static String serving() {
    Natives.ensureLoaded();
    Pointer p = Loader.addressof("sgemm_");
    if (p == null || p.isNull()) return "unknown";
    long address = p.address();
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/maps"))) {
        String[] f = line.split("\\s+", 6);
        if (f.length < 6) continue;
        int dash = f[0].indexOf('-');
        long lo = Long.parseUnsignedLong(f[0].substring(0, dash), 16);
        long hi = Long.parseUnsignedLong(f[0].substring(dash + 1), 16);
        if (Long.compareUnsigned(address, lo) >= 0 && Long.compareUnsigned(address, hi) < 0) {
          return f[5].strip();
        }
      }
    } catch (IOException | RuntimeException e) {
      return "unknown";
    }
    return "unknown";
  }
}
