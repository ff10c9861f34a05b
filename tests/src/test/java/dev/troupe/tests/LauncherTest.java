package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The JDK discovery of {@code bin/troupe}, {@code bin/test} and {@code .ci/run} ({@code
 * bin/lib/jdk.sh}, function {@code troupe_find_jdk}). Builds nothing: it sources the script in a
 * bash subprocess.
 */
class LauncherTest {
  /** Maven runs the tests with the module folder as working directory. */
  static final Path ROOT = Path.of("..").toAbsolutePath().normalize();

  static final Path JDK_SH = ROOT.resolve("bin/lib/jdk.sh");
  static final Path JDK17 = Path.of("/usr/lib/jvm/java-17-openjdk-amd64");

  /** Sources jdk.sh, runs troupe_find_jdk and prints TROUPE_JAVA_HOME. */
  static final String FIND =
      "source \"$1\" && troupe_find_jdk && printf '%s\\n' \"$TROUPE_JAVA_HOME\"";

  record Result(int exit, String out, String err) {}

  @Test
  void findsJdk21OrNewerWhenJavaHomeAndPathPointToJdk17() throws Exception {
    assumeTrue(Files.isExecutable(JDK17.resolve("bin/java")), "no JDK 17 at " + JDK17);
    assumeTrue(majorVersion(JDK17) == 17, JDK17 + " is not a JDK 17");

    Result r =
        findJdk(
            Map.of(
                "JAVA_HOME",
                JDK17.toString(),
                "PATH",
                JDK17.resolve("bin") + ":/usr/local/bin:/usr/bin:/bin"));

    assertEquals(0, r.exit(), "troupe_find_jdk failed: " + r.err());
    Path home = Path.of(r.out().strip());
    assertNotEquals(JDK17.toRealPath(), home.toRealPath());
    assertTrue(Files.isExecutable(home.resolve("bin/javac")), home + " has no javac");
    int major = majorVersion(home);
    assertTrue(major >= 21, home + " is Java " + major + ", wanted 21 or newer");
  }

  @Test
  void failsWithOneClearLineWhenThereIsNoJdk(@TempDir Path tmp) throws Exception {
    Path home = Files.createDirectories(tmp.resolve("home"));
    Path jvms = Files.createDirectories(tmp.resolve("jvm"));
    Path emptyBin = Files.createDirectories(tmp.resolve("bin"));

    Result r =
        findJdk(
            Map.of(
                "HOME", home.toString(),
                "TROUPE_JDK_SEARCH_PATHS", jvms + "/*:" + tmp.resolve("opt") + "/jdk*",
                "PATH", emptyBin.toString()));

    assertEquals(1, r.exit(), "stdout: " + r.out() + "\nstderr: " + r.err());
    assertEquals("", r.out());
    String err = r.err().strip();
    assertFalse(err.contains("\n"), "more than one line: " + err);
    assertTrue(
        err.startsWith("troupe: no JDK 21 or newer found (looked at JAVA_HOME, PATH, " + jvms),
        err);
    assertTrue(err.endsWith("); install one or set JAVA_HOME"), err);
  }

  @Test
  void choosesTheNewestJdkInTheSearchPathsAndParsesEveryVersionStyle(@TempDir Path tmp)
      throws Exception {
    Path jvms = tmp.resolve("jvm");
    fakeJdk(jvms.resolve("java-8"), "java version \"1.8.0_392\"", true);
    fakeJdk(jvms.resolve("jdk-17"), "openjdk version \"17.0.15\" 2025-04-15", true);
    fakeJdk(jvms.resolve("jdk-21"), "openjdk version \"21\" 2023-09-19", true);
    fakeJdk(jvms.resolve("jdk-21.0.10"), "openjdk version \"21.0.10\" 2026-01-20 LTS", true);
    fakeJdk(jvms.resolve("jdk-25"), "openjdk version \"25.0.3\" 2026-04-21 LTS", true);
    fakeJdk(jvms.resolve("jre-26"), "openjdk version \"26\" 2026-03-17", false); // no javac
    Path emptyBin = Files.createDirectories(tmp.resolve("bin"));
    Map<String, String> env =
        Map.of(
            "HOME", tmp.toString(),
            "TROUPE_JDK_SEARCH_PATHS", jvms + "/*",
            "PATH", emptyBin.toString());

    Result r = findJdk(env);
    assertEquals(0, r.exit(), r.err());
    assertEquals(jvms.resolve("jdk-25").toRealPath().toString(), r.out().strip());

    // JAVA_HOME wins when it is new enough, even over a newer JDK elsewhere...
    r = findJdk(with(env, "JAVA_HOME", jvms.resolve("jdk-21").toString()));
    assertEquals(0, r.exit(), r.err());
    assertEquals(jvms.resolve("jdk-21").toRealPath().toString(), r.out().strip());

    // ...and is skipped when it is too old (1.8) or has no javac.
    for (String old : List.of("java-8", "jdk-17", "jre-26")) {
      r = findJdk(with(env, "JAVA_HOME", jvms.resolve(old).toString()));
      assertEquals(0, r.exit(), r.err());
      assertEquals(
          jvms.resolve("jdk-25").toRealPath().toString(), r.out().strip(), "JAVA_HOME=" + old);
    }
  }

  // ---------------------------------------------------------------------------------------------

  /** Runs troupe_find_jdk with JAVA_HOME and TROUPE_JDK_SEARCH_PATHS unset unless given in env. */
  static Result findJdk(Map<String, String> env) throws Exception {
    assertTrue(Files.isRegularFile(JDK_SH), "missing " + JDK_SH);
    ProcessBuilder pb = new ProcessBuilder(bash(), "-c", FIND, "bash", JDK_SH.toString());
    Map<String, String> e = pb.environment();
    e.remove("JAVA_HOME");
    e.remove("TROUPE_JAVA_HOME");
    e.remove("TROUPE_JDK_SEARCH_PATHS");
    e.putAll(env);
    return run(pb);
  }

  static Result run(ProcessBuilder pb) throws Exception {
    Process p = pb.start();
    p.getOutputStream().close();
    CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> read(p.getErrorStream()));
    String out = read(p.getInputStream());
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError("timed out: " + pb.command());
    }
    return new Result(p.exitValue(), out, err.get());
  }

  static String read(InputStream in) {
    try (in) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new AssertionError(e);
    }
  }

  /** An absolute bash, so that the child's PATH can leave it out. */
  static String bash() {
    for (String candidate :
        List.of("/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash", "/opt/homebrew/bin/bash")) {
      if (Files.isExecutable(Path.of(candidate))) return candidate;
    }
    assumeTrue(false, "no bash");
    return null;
  }

  /** The feature version that {@code HOME/bin/java -version} reports. */
  static int majorVersion(Path home) throws Exception {
    Result r = run(new ProcessBuilder(home.resolve("bin/java").toString(), "-version"));
    Matcher m = Pattern.compile("version \"(1\\.)?(\\d+)").matcher(r.err() + r.out());
    assertTrue(m.find(), "no version in: " + r.err());
    return Integer.parseInt(m.group(2));
  }

  static Map<String, String> with(Map<String, String> env, String key, String value) {
    var copy = new java.util.HashMap<>(env);
    copy.put(key, value);
    return copy;
  }

  /** A directory with bin/java (and bin/javac) scripts that print the given version line. */
  static void fakeJdk(Path home, String versionLine, boolean javac) throws IOException {
    Path bin = Files.createDirectories(home.resolve("bin"));
    String script =
        "#!/bin/sh\n"
            + "echo 'Picked up JAVA_TOOL_OPTIONS: -Dfake=1' >&2\n"
            + "echo '"
            + versionLine.replace("'", "'\\''")
            + "' >&2\n"
            + "echo 'Fake Runtime Environment' >&2\n";
    for (String tool : javac ? List.of("java", "javac") : List.of("java")) {
      Path f = bin.resolve(tool);
      Files.writeString(f, script);
      Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rwxr-xr-x"));
    }
  }
}
