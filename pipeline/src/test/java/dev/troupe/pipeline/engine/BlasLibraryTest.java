package dev.troupe.pipeline.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class BlasLibraryTest {
  private static final String INTEL_AVX512 =
      "vendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 avx512f avx512bw amx_bf16\n";
  private static final String INTEL_AVX2 =
      "vendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 fma avx512_vnni_lookalike\n";
  private static final String AMD_AVX512 =
      "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n";

  private static Predicate<Path> files(String... present) {
    Set<Path> set = Set.of(java.util.Arrays.stream(present).map(Path::of).toArray(Path[]::new));
    return set::contains;
  }

  private static final String DEBIAN = BlasLibrary.DEBIAN_PTHREADS.toString();

  @ParameterizedTest(name = "{0} on {1}, linux-x86_64 {2}, Debian's installed {3}: {4}")
  @CsvSource({
    // setting, cpu, linux-x86_64, Debian's pthreads build installed, expected (- = bundled)
    "auto, INTEL_AVX512, true, true, DEBIAN",
    "'', INTEL_AVX512, true, true, DEBIAN",
    "' auto ', INTEL_AVX512, true, true, DEBIAN",
    "auto, INTEL_AVX512, true, false, -",
    "auto, INTEL_AVX512, false, true, -",
    "auto, INTEL_AVX2, true, true, -",
    "auto, AMD_AVX512, true, true, -",
    "auto, NONE, true, true, -",
    "bundled, INTEL_AVX512, true, true, -",
    "/opt/blas/libopenblas.so.0, AMD_AVX512, true, true, /opt/blas/libopenblas.so.0",
  })
  void choosesByTheSettingTheCpuAndWhatIsInstalled(
      String setting, String cpu, boolean linuxX86, boolean installed, String expected) {
    String cpuinfo =
        switch (cpu) {
          case "INTEL_AVX512" -> INTEL_AVX512;
          case "INTEL_AVX2" -> INTEL_AVX2;
          case "AMD_AVX512" -> AMD_AVX512;
          default -> "";
        };
    Predicate<Path> isFile =
        installed
            ? files(DEBIAN, "/opt/blas/libopenblas.so.0")
            : files("/opt/blas/libopenblas.so.0");
    Path chosen = BlasLibrary.choose(setting, cpuinfo, linuxX86, isFile);
    String want = expected.equals("DEBIAN") ? DEBIAN : expected;
    assertEquals(want, chosen == null ? "-" : chosen.toString());
  }

  @Test
  void aPathThatIsNotThereIsAnErrorNamingTheSetting() {
    var e =
        assertThrows(
            IllegalArgumentException.class,
            () -> BlasLibrary.choose("/no/such/libopenblas.so.0", INTEL_AVX512, true, files()));
    assertTrue(e.getMessage().startsWith("TROUPE_BLAS=/no/such/libopenblas.so.0: no such file"));
  }

  /** The library this JVM chose is the one whose sgemm_ the process resolves, libtorch included. */
  @Test
  void theChosenLibraryServesTheProducts() throws Exception {
    Path chosen = BlasLibrary.choose();
    String serving = BlasLibrary.serving();
    assertNotEquals("unknown", serving);
    if (chosen != null) {
      assertEquals(chosen.toRealPath(), Path.of(serving).toRealPath(), serving);
    } else if (Files.exists(BlasLibrary.DEBIAN_PTHREADS)) {
      assertNotEquals(BlasLibrary.DEBIAN_PTHREADS.toRealPath(), Path.of(serving).toRealPath());
    }
    System.out.println(
        "BLAS chosen " + (chosen == null ? "bundled" : chosen) + ", serving " + serving);
  }
}
