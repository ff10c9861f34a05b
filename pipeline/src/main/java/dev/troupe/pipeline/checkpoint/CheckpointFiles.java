package dev.troupe.pipeline.checkpoint;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Names, hashing, JSON and folder operations shared by the checkpoint classes. */
final class CheckpointFiles {
  static final String MANIFEST = "manifest.json";
  static final String SAFETENSORS = ".safetensors";
  static final String JSON = ".json";

  /** Fails on duplicate keys and on anything after the top-level value. */
  static final ObjectMapper MAPPER =
      new ObjectMapper(new JsonFactory().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION))
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
          .enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY);

  private static final Pattern STEP_DIR = Pattern.compile("step-(\\d{8,18})");
  private static final Pattern TMP_DIR = Pattern.compile("\\.step-\\d+\\.tmp-.+");

  private CheckpointFiles() {}

  /** {@code step-<step padded to 8 digits>}. */
  static String folderName(long step) {
    return String.format(Locale.ROOT, "step-%08d", step);
  }

  /** The step of a {@code step-<digits>} folder name as {@link #folderName} writes it, else -1. */
  static long parseStep(String name) {
    Matcher m = STEP_DIR.matcher(name);
    if (!m.matches()) {
      return -1;
    }
    long step = Long.parseLong(m.group(1));
    return folderName(step).equals(name) ? step : -1;
  }

  static boolean hasManifest(Path folder) {
    return Files.exists(folder.resolve(MANIFEST), LinkOption.NOFOLLOW_LINKS);
  }

  /** The step of a {@code step-<digits>} folder. */
  static long stepOf(Path folder) {
    return parseStep(folder.getFileName().toString());
  }

  /** The {@code step-<digits>} folders in {@code dir}, unordered; none if it is absent. */
  static List<Path> stepFolders(Path dir) throws IOException {
    List<Path> folders = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return folders;
    }
    try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
      for (Path p : entries) {
        if (stepOf(p) >= 0 && Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
          folders.add(p);
        }
      }
    }
    return folders;
  }

  static boolean isTemporary(String name) {
    return TMP_DIR.matcher(name).matches();
  }

  /** A fresh name {@code .step-<S>.tmp-<random>} inside {@code dir}. */
  static Path temporarySibling(Path dir, long step) {
    return dir.resolve(
        "."
            + folderName(step)
            + ".tmp-"
            + Long.toHexString(ThreadLocalRandom.current().nextLong()));
  }

  /**
   * Checks that {@code name} is a plain file name ending in {@code suffix} and is not the manifest.
   *
   * @throws IllegalArgumentException naming the problem
   */
  static String checkName(String name, String suffix) {
    if (name == null) {
      throw new IllegalArgumentException("checkpoint file name is null");
    }
    if (name.contains("/") || name.contains("\\") || name.startsWith(".") || name.isBlank()) {
      throw new IllegalArgumentException(
          "checkpoint file name must be a plain name (no '/', '\\' or leading '.'): '"
              + name
              + "'");
    }
    if (name.equals(MANIFEST)) {
      throw new IllegalArgumentException(MANIFEST + " is reserved for the checkpoint manifest");
    }
    if (!name.endsWith(suffix) || name.length() == suffix.length()) {
      throw new IllegalArgumentException(
          "checkpoint file name '" + name + "' must end in " + suffix);
    }
    return name;
  }

  /** Checks a name that may be either kind of checkpoint file. */
  static String checkAnyName(String name) {
    return name != null && name.endsWith(JSON)
        ? checkName(name, JSON)
        : checkName(name, SAFETENSORS);
  }

  /** The lowercase hex SHA-256 of the whole file (reads it fully). */
  static String sha256(Path file) throws IOException {
    MessageDigest md;
    try {
      md = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is not available", e);
    }
    byte[] buf = new byte[1 << 16];
    try (InputStream in = Files.newInputStream(file)) {
      for (int n; (n = in.read(buf)) > 0; ) {
        md.update(buf, 0, n);
      }
    }
    return HexFormat.of().formatHex(md.digest());
  }

  /** Parses one JSON value strictly; an empty file is an error. */
  static JsonNode readJson(Path file) throws IOException {
    JsonNode node = MAPPER.readTree(Files.readAllBytes(file));
    if (node == null || node.isMissingNode()) {
      throw new IOException(file + ": empty JSON file");
    }
    return node;
  }

  /** Makes renames and new entries in {@code dir} durable where the platform allows it. */
  static void syncDirectory(Path dir) {
    try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
      ch.force(true);
    } catch (IOException | RuntimeException e) {
      // opening a folder is not supported here (e.g. Windows); the renames are still atomic
    }
  }

  /** Deletes {@code path} and everything below it, without following links; absent is fine. */
  static void deleteRecursively(Path path) throws IOException {
    if (Files.isDirectory(path, LinkOption.NOFOLLOW_LINKS)) {
      try (DirectoryStream<Path> entries = Files.newDirectoryStream(path)) {
        for (Path p : entries) {
          deleteRecursively(p);
        }
      } catch (NoSuchFileException e) {
        return;
      }
    }
    Files.deleteIfExists(path);
  }
}
