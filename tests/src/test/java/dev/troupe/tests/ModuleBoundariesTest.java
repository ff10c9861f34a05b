package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The dependency directions of DESIGN.md, enforced: each module's pom may depend only on the
 * modules it is allowed to, and its Java sources may import only those modules' packages. The
 * pipeline holds no actors: it never imports Pekko.
 */
class ModuleBoundariesTest {
  static final Path ROOT = Path.of("..").toAbsolutePath().normalize();

  /** module -> its root package. */
  static final Map<String, String> PACKAGES =
      Map.of(
          "pipeline", "dev.troupe.pipeline",
          "persistence", "dev.troupe.persistence",
          "gpu-actor", "dev.troupe.device",
          "coordinator", "dev.troupe.coordinator",
          "cli", "dev.troupe.cli",
          "tests", "dev.troupe.tests");

  /** module -> the modules it may depend on. */
  static final Map<String, Set<String>> ALLOWED =
      Map.of(
          "pipeline", Set.of(),
          "persistence", Set.of("pipeline"),
          "gpu-actor", Set.of("pipeline", "persistence"),
          "coordinator", Set.of("pipeline", "persistence", "gpu-actor"),
          "cli", Set.of("pipeline", "persistence", "gpu-actor", "coordinator"),
          "tests", Set.of("pipeline", "persistence", "gpu-actor", "coordinator", "cli"));

  @Test
  void everyModuleIsKnown() throws IOException {
    String parent = Files.readString(ROOT.resolve("pom.xml"));
    Set<String> modules = new TreeSet<>();
    Matcher m = Pattern.compile("<module>([^<]+)</module>").matcher(parent);
    while (m.find()) modules.add(m.group(1));
    assertEquals(
        new TreeSet<>(ALLOWED.keySet()),
        modules,
        "the parent pom's modules and this test's table differ");
  }

  @Test
  void pomDependenciesFollowTheAllowedDirections() throws IOException {
    List<String> violations = new ArrayList<>();
    Pattern dep =
        Pattern.compile(
            "<groupId>dev\\.troupe</groupId>\\s*<artifactId>troupe-([a-z-]+)</artifactId>");
    for (String module : ALLOWED.keySet()) {
      String pom = Files.readString(ROOT.resolve(module).resolve("pom.xml"));
      String deps = pom.substring(Math.max(0, pom.indexOf("<dependencies>")));
      Matcher m = dep.matcher(deps);
      while (m.find()) {
        if (!ALLOWED.get(module).contains(m.group(1)))
          violations.add(module + "/pom.xml depends on " + m.group(1));
      }
    }
    assertTrue(violations.isEmpty(), String.join("\n", violations));
  }

  @Test
  void importsFollowTheAllowedDirections() throws IOException {
    List<String> violations = new ArrayList<>();
    Pattern imp =
        Pattern.compile(
            "^import\\s+(?:static\\s+)?(dev\\.troupe\\.[a-z]+|org\\.apache\\.pekko)\\.",
            Pattern.MULTILINE);
    for (String module : ALLOWED.keySet()) {
      Path src = ROOT.resolve(module).resolve("src");
      if (!Files.isDirectory(src)) continue;
      try (Stream<Path> files = Files.walk(src)) {
        for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
          Matcher m = imp.matcher(Files.readString(f));
          while (m.find()) {
            String pkg = m.group(1);
            if (pkg.equals("org.apache.pekko")) {
              if (module.equals("pipeline"))
                violations.add(ROOT.relativize(f) + " imports Pekko (the pipeline has no actors)");
              continue;
            }
            String target =
                PACKAGES.entrySet().stream()
                    .filter(e -> e.getValue().equals(pkg))
                    .map(Map.Entry::getKey)
                    .findFirst()
                    .orElse(null);
            if (target == null) {
              violations.add(
                  ROOT.relativize(f) + " imports " + pkg + ", which belongs to no module");
            } else if (!target.equals(module) && !ALLOWED.get(module).contains(target)) {
              violations.add(
                  ROOT.relativize(f)
                      + " imports "
                      + pkg
                      + " ("
                      + module
                      + " may not depend on "
                      + target
                      + ")");
            }
          }
        }
      }
    }
    assertTrue(violations.isEmpty(), String.join("\n", violations));
  }
}
