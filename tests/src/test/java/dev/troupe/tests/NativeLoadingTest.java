package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Several JVMs that start at once on an empty native cache all load libtorch and compute. Before
 * the inter-process lock in {@code Natives}, 2 of 4 such JVMs died with SIGBUS in the dynamic
 * linker (one mapped a library another was still extracting). Where Debian's python3-torch is
 * installed, its libtorch is on the system search path too, the other way this used to fail.
 */
class NativeLoadingTest {
  static final int JVMS = 4;

  @Test
  void concurrentColdStartsAllLoadLibtorch(@TempDir Path cache) throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    String classpath = System.getProperty("java.class.path");
    List<Process> processes = new ArrayList<>();
    for (int i = 0; i < JVMS; i++) {
      processes.add(
          new ProcessBuilder(
                  java,
                  "--enable-native-access=ALL-UNNAMED",
                  "-Dorg.bytedeco.javacpp.cachedir=" + cache,
                  "-cp",
                  classpath,
                  NativeProbe.class.getName())
              .redirectErrorStream(true)
              .redirectOutput(
                  cache.resolveSibling(cache.getFileName() + "-out" + i + ".txt").toFile())
              .start());
    }
    for (int i = 0; i < JVMS; i++) {
      Process p = processes.get(i);
      assertTrue(p.waitFor(300, TimeUnit.SECONDS), "JVM " + i + " did not finish");
      String out =
          Files.readString(cache.resolveSibling(cache.getFileName() + "-out" + i + ".txt"));
      assertEquals(0, p.exitValue(), "JVM " + i + " failed:\n" + out);
      assertTrue(out.contains("sum=64.0"), "JVM " + i + " printed:\n" + out);
    }
  }
}
