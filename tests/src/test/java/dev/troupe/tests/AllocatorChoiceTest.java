package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.troupe.tests.LauncherTest.Result;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The native allocator bin/troupe preloads ({@code bin/lib/malloc.sh}, function {@code
 * troupe_pick_malloc}), run by sourcing the script in a bash subprocess against a fake library;
 * and, where tcmalloc is installed, that a JVM started with it reports it the way {@code troupe
 * bench-run} does.
 */
class AllocatorChoiceTest {
  static final Path MALLOC_SH = LauncherTest.ROOT.resolve("bin/lib/malloc.sh");

  /** Sources malloc.sh, runs troupe_pick_malloc and prints LD_PRELOAD and the choice. */
  static final String PICK =
      "source \"$1\" && troupe_pick_malloc && printf '%s|%s\\n' \"${LD_PRELOAD:-}\""
          + " \"$TROUPE_MALLOC_CHOSEN\"";

  @TempDir Path tmp;
  Path fakeLib;
  Path libDir;

  @BeforeEach
  void fakeTcmalloc() throws Exception {
    libDir = Files.createDirectories(tmp.resolve("lib/x86_64-linux-gnu"));
    fakeLib = Files.writeString(libDir.resolve("libtcmalloc_minimal.so.4"), "not a library");
  }

  @Test
  void autoPreloadsTcmallocWhereItIsFoundAndSaysNothing() throws Exception {
    Result r = pick(Map.of("TROUPE_MALLOC_SEARCH_PATHS", tmp + "/lib/*/libtcmalloc_minimal.so.4"));
    assertEquals(0, r.exit(), r.err());
    assertEquals(fakeLib + "|" + fakeLib, r.out().strip());
    assertEquals("", r.err());
  }

  @Test
  void tcmallocGoesBeforeAPreloadThatIsNotAnAllocator() throws Exception {
    Result r =
        pick(
            Map.of(
                "TROUPE_MALLOC_SEARCH_PATHS",
                fakeLib.toString(),
                "LD_PRELOAD",
                "/opt/x/libprobe.so"));
    assertEquals(0, r.exit(), r.err());
    assertEquals(fakeLib + ":/opt/x/libprobe.so|" + fakeLib, r.out().strip());
  }

  @Test
  void anAllocatorAlreadyPreloadedIsKept() throws Exception {
    Result r =
        pick(
            Map.of(
                "TROUPE_MALLOC_SEARCH_PATHS",
                fakeLib.toString(),
                "LD_PRELOAD",
                "/usr/lib/libjemalloc.so.2"));
    assertEquals(0, r.exit(), r.err());
    assertEquals("/usr/lib/libjemalloc.so.2|/usr/lib/libjemalloc.so.2", r.out().strip());
  }

  @Test
  void autoWithoutTcmallocKeepsGlibcAndSaysHowToInstallIt() throws Exception {
    Result r = pick(Map.of("TROUPE_MALLOC_SEARCH_PATHS", tmp + "/nowhere/*.so.4"));
    assertEquals(0, r.exit(), r.err());
    assertEquals("|glibc", r.out().strip());
    String err = r.err().strip();
    assertFalse(err.contains("\n"), "more than one line: " + err);
    assertTrue(err.contains("apt install libtcmalloc-minimal4"), err);
    assertTrue(err.contains("TROUPE_MALLOC=glibc"), err);
  }

  @Test
  void glibcLeavesThePreloadAloneAndIsSilent() throws Exception {
    Result r =
        pick(Map.of("TROUPE_MALLOC", "glibc", "TROUPE_MALLOC_SEARCH_PATHS", fakeLib.toString()));
    assertEquals(0, r.exit(), r.err());
    assertEquals("|glibc", r.out().strip());
    assertEquals("", r.err());
  }

  @Test
  void anExplicitLibraryPathIsPreloaded() throws Exception {
    Path other = Files.writeString(tmp.resolve("libother.so"), "not a library");
    Result r = pick(Map.of("TROUPE_MALLOC", other.toString()));
    assertEquals(0, r.exit(), r.err());
    assertEquals(other + "|" + other, r.out().strip());
  }

  @Test
  void choicesThatCannotBeHonouredFailWithOneLineNamingThem() throws Exception {
    Result missingTcmalloc =
        pick(Map.of("TROUPE_MALLOC", "tcmalloc", "TROUPE_MALLOC_SEARCH_PATHS", tmp + "/no.so"));
    assertEquals(1, missingTcmalloc.exit());
    assertEquals("", missingTcmalloc.out());
    assertOneLineContaining(missingTcmalloc.err(), "TROUPE_MALLOC=tcmalloc");

    Result missingFile = pick(Map.of("TROUPE_MALLOC", tmp + "/libgone.so"));
    assertEquals(1, missingFile.exit());
    assertOneLineContaining(missingFile.err(), tmp + "/libgone.so: no such file");

    Result unknown = pick(Map.of("TROUPE_MALLOC", "fastest"));
    assertEquals(1, unknown.exit());
    assertOneLineContaining(unknown.err(), "TROUPE_MALLOC=fastest");
  }

  /** A JVM started under tcmalloc names it, as bench-run's "allocator" field does; glibc else. */
  @Test
  void aJvmReportsTheAllocatorItRunsWith() throws Exception {
    Path tcmalloc = requireTcmalloc();
    Path probe =
        Files.writeString(
            tmp.resolve("Probe.java"),
            "class Probe { public static void main(String[] a) {"
                + " System.out.println(dev.troupe.pipeline.engine.NativeHeap.allocator()); } }");
    String classes = LauncherTest.ROOT.resolve("pipeline/target/classes").toString();

    Result r = runJava(classes, probe, tcmalloc);
    assertEquals(0, r.exit(), r.err());
    // /proc/self/maps names the file the symlink resolves to (libtcmalloc_minimal.so.4.5.10).
    assertEquals(tcmalloc.toRealPath().getFileName().toString(), r.out().strip());

    Result g = runJava(classes, probe, null);
    assertEquals(0, g.exit(), g.err());
    assertEquals("glibc", g.out().strip());
  }

  /**
   * Under tcmalloc glibc's heap is unused, and the first {@code malloc_trim} sets it up: two
   * threads doing that at once crashed the JVM (SIGSEGV in malloc_trim; 2 of 6 runs of eight
   * threads calling JavaCPP's {@code Pointer.trimMemory} at once). {@code NativeHeap.trim} leaves
   * glibc's heap alone there, and loading libtorch sets it up once ({@code NativeHeap.prepare}), so
   * that JavaCPP's own trims are safe too. Five runs of eight threads trimming at once, both ways.
   */
  @Test
  void trimmingFromManyThreadsAtOnceIsSafeUnderTcmalloc() throws Exception {
    Path tcmalloc = requireTcmalloc();
    Path probe =
        Files.writeString(
            tmp.resolve("Trim.java"),
            """
            class Trim {
              public static void main(String[] a) throws Exception {
                // libtorch loaded first (as every Troupe process does before its work), so that
                // the threads meet in the trim
                dev.troupe.pipeline.engine.Torch.init();
                var barrier = new java.util.concurrent.CyclicBarrier(8);
                var threads = new Thread[8];
                for (int i = 0; i < threads.length; i++) {
                  threads[i] = new Thread(() -> {
                    try { barrier.await(); } catch (Exception e) { throw new RuntimeException(e); }
                    dev.troupe.pipeline.engine.NativeHeap.trim();
                    // as JavaCPP does by itself above maxPhysicalBytes, on any thread
                    org.bytedeco.javacpp.Pointer.trimMemory();
                  });
                  threads[i].start();
                }
                for (Thread t : threads) t.join();
                System.out.println("trimmed");
              }
            }
            """);
    for (int run = 0; run < 5; run++) {
      Result r = runJava(System.getProperty("java.class.path"), probe, tcmalloc);
      assertEquals(0, r.exit(), "run " + run + ":\n" + r.out() + r.err());
      assertEquals("trimmed", r.out().strip());
    }
  }

  /** The installed tcmalloc; the test is skipped where there is none. */
  private static Path requireTcmalloc() throws Exception {
    Path tcmalloc = installedTcmalloc();
    assumeTrue(tcmalloc != null, "tcmalloc is not installed (apt install libtcmalloc-minimal4)");
    return tcmalloc;
  }

  /** Runs a one-file Java program with this JVM, preloading {@code preload} (none where null). */
  private static Result runJava(String classpath, Path source, Path preload) throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    ProcessBuilder pb = new ProcessBuilder(java, "-cp", classpath, source.toString());
    if (preload == null) {
      pb.environment().remove("LD_PRELOAD");
    } else {
      pb.environment().put("LD_PRELOAD", preload.toString());
    }
    return LauncherTest.run(pb);
  }

  static Path installedTcmalloc() throws Exception {
    ProcessBuilder pb =
        new ProcessBuilder(
            LauncherTest.bash(),
            "-c",
            "source \"$1\" && _troupe_find_tcmalloc",
            "bash",
            MALLOC_SH.toString());
    pb.environment().remove("TROUPE_MALLOC_SEARCH_PATHS");
    Result r = LauncherTest.run(pb);
    return r.exit() == 0 ? Path.of(r.out().strip()) : null;
  }

  Result pick(Map<String, String> env) throws Exception {
    assertTrue(Files.isRegularFile(MALLOC_SH), "missing " + MALLOC_SH);
    ProcessBuilder pb =
        new ProcessBuilder(LauncherTest.bash(), "-c", PICK, "bash", MALLOC_SH.toString());
    Map<String, String> e = pb.environment();
    for (String k : List.of("LD_PRELOAD", "TROUPE_MALLOC", "TROUPE_MALLOC_SEARCH_PATHS")) {
      e.remove(k);
    }
    e.putAll(new HashMap<>(env));
    return LauncherTest.run(pb);
  }

  static void assertOneLineContaining(String err, String expected) {
    String line = err.strip();
    assertFalse(line.contains("\n"), "more than one line: " + line);
    assertTrue(line.contains(expected), "expected '" + expected + "' in: " + line);
  }
}
