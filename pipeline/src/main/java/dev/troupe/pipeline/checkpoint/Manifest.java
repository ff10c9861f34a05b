package dev.troupe.pipeline.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.Collections;
import java.util.Map;
import java.util.Optional;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * The {@code manifest.json} of a checkpoint: {@code {"format": 1, "step": S, "created": ISO-8601,
 * "files": {"name": {"bytes": N, "sha256": "hex"}, ...}}}.
 *
 * @param step the training step
 * @param created when the checkpoint was written
 * @param files size and hash of every file in the checkpoint, by name
 */
record Manifest(long step, Instant created, SortedMap<String, Manifest.Entry> files) {
  static final int FORMAT = 1;

  /** Size and lowercase hex SHA-256 of one file. */
  record Entry(long bytes, String sha256) {
    /** Measures {@code file}, reading it fully to hash it. */
    static Entry of(Path file) throws IOException {
      return new Entry(Files.size(file), CheckpointFiles.sha256(file));
    }
  }

  Manifest {
    files = Collections.unmodifiableSortedMap(new TreeMap<>(files));
  }

  byte[] toJson() throws IOException {
    ObjectNode root = CheckpointFiles.MAPPER.createObjectNode();
    root.put("format", FORMAT);
    root.put("step", step);
    root.put("created", created.toString());
    ObjectNode list = root.putObject("files");
    files.forEach(
        (name, e) -> list.putObject(name).put("bytes", e.bytes()).put("sha256", e.sha256()));
    return CheckpointFiles.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(root);
  }

  /**
   * Reads and checks the structure of {@code dir/manifest.json}.
   *
   * @throws IOException with a short description if it cannot be read or is malformed
   */
  static Manifest read(Path dir) throws IOException {
    JsonNode root;
    try {
      root = CheckpointFiles.readJson(dir.resolve(CheckpointFiles.MANIFEST));
    } catch (IOException e) {
      throw new IOException("unreadable: " + firstLine(e), e);
    }
    if (!root.isObject()) {
      throw new IOException("not a JSON object");
    }
    if (!root.path("format").isIntegralNumber() || root.path("format").asLong() != FORMAT) {
      throw new IOException(
          "unsupported format " + root.get("format") + " (expected " + FORMAT + ")");
    }
    JsonNode step = root.path("step");
    if (!step.isIntegralNumber() || !step.canConvertToLong() || step.asLong() < 0) {
      throw new IOException("bad step " + root.get("step"));
    }
    Instant created;
    try {
      created = Instant.parse(root.path("created").asText(""));
    } catch (DateTimeParseException e) {
      throw new IOException("bad created time " + root.get("created"), e);
    }
    JsonNode list = root.path("files");
    if (!list.isObject()) {
      throw new IOException("no files object");
    }
    SortedMap<String, Entry> files = new TreeMap<>();
    for (Map.Entry<String, JsonNode> f : list.properties()) {
      JsonNode bytes = f.getValue().path("bytes");
      String sha = f.getValue().path("sha256").asText("");
      try {
        CheckpointFiles.checkAnyName(f.getKey());
      } catch (IllegalArgumentException e) {
        throw new IOException("bad file name: " + e.getMessage(), e);
      }
      if (!bytes.isIntegralNumber() || bytes.asLong() < 0 || !sha.matches("[0-9a-f]{64}")) {
        throw new IOException("bad entry for " + f.getKey());
      }
      files.put(f.getKey(), new Entry(bytes.asLong(), sha));
    }
    return new Manifest(step.asLong(), created, files);
  }

  /**
   * What is wrong with a checkpoint folder that has a manifest (unreadable manifest, step not
   * matching the folder name, a file missing or with the wrong size or hash), or empty if it is
   * valid. Reads every file fully.
   */
  static Optional<String> verify(Path folder) {
    Manifest manifest;
    try {
      manifest = read(folder);
    } catch (IOException e) {
      return Optional.of(CheckpointFiles.MANIFEST + ": " + e.getMessage());
    }
    if (manifest.step() != CheckpointFiles.stepOf(folder)) {
      return Optional.of(
          CheckpointFiles.MANIFEST + ": step " + manifest.step() + " does not match the folder");
    }
    return manifest.problem(folder);
  }

  /**
   * The first problem with the files in {@code dir} (each listed file must exist with the listed
   * size and hash), or empty if they all match. Reads every file fully.
   */
  Optional<String> problem(Path dir) {
    for (Map.Entry<String, Entry> f : files.entrySet()) {
      Path file = dir.resolve(f.getKey());
      String name = f.getKey();
      if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS)) {
        return Optional.of(name + ": missing");
      }
      try {
        long size = Files.size(file);
        if (size != f.getValue().bytes()) {
          return Optional.of(
              name + ": size " + size + " bytes, manifest says " + f.getValue().bytes());
        }
        if (!CheckpointFiles.sha256(file).equals(f.getValue().sha256())) {
          return Optional.of(name + ": sha256 mismatch");
        }
      } catch (IOException e) {
        return Optional.of(name + ": unreadable: " + firstLine(e));
      }
    }
    return Optional.empty();
  }

  private static String firstLine(Exception e) {
    String m = String.valueOf(e.getMessage());
    int nl = m.indexOf('\n');
    return nl < 0 ? m : m.substring(0, nl);
  }
}
