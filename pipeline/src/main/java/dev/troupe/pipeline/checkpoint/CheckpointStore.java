package dev.troupe.pipeline.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import dev.troupe.pipeline.io.AtomicFile;
import dev.troupe.pipeline.safetensors.SafetensorsWriter;
import dev.troupe.pipeline.safetensors.TensorData;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Training checkpoints in one folder, one sub-folder {@code step-<step padded to 8 digits>} per
 * checkpoint, each with its files and a {@code manifest.json} listing their sizes and SHA-256.
 * Saves are atomic (a checkpoint folder only ever appears complete) and old checkpoints are pruned.
 * Verification reads every file fully to hash it, which is cheap for LoRA adapter and optimizer
 * state but not meant for full-model checkpoints. One writer per folder at a time.
 */
public final class CheckpointStore {
  private static final Logger LOG = LoggerFactory.getLogger(CheckpointStore.class);
  private static final DateTimeFormatter STAMP =
      DateTimeFormatter.ofPattern("yyyyMMdd'T'HHmmss'Z'").withZone(ZoneOffset.UTC);

  /** Safetensors metadata written to every tensor file, as Hugging Face loaders expect. */
  private static final Map<String, String> TENSOR_METADATA = Map.of("format", "pt");

  private final Path dir;
  private final int keep;

  /**
   * A store over {@code dir}; nothing is read or created until it is used.
   *
   * @param dir the checkpoints folder ({@code <output>/checkpoints}); created, with any missing
   *     parents, on the first save
   * @param keep how many valid checkpoints {@link #save} keeps; at least 1
   */
  public CheckpointStore(Path dir, int keep) {
    this.dir = Objects.requireNonNull(dir, "dir");
    if (keep < 1) {
      throw new IllegalArgumentException("keep must be at least 1: " + keep);
    }
    this.keep = keep;
  }

  /**
   * Writes a checkpoint atomically: everything goes into a fresh temporary folder {@code
   * <dir>/.step-<S>.tmp-<random>/}, each file fsynced, then manifest.json (written last), the
   * folder fsynced, then renamed to {@code step-<S>}, and {@code <dir>} fsynced. An existing {@code
   * step-<S>} (e.g. from an earlier attempt) is replaced only after the new one is complete (it is
   * renamed aside first, then deleted). Afterwards prunes to the newest {@code keep} valid
   * checkpoints, never deleting the one just written, and removes stale {@code .step-*.tmp-*}
   * folders older than this save. Pruning and clean-up problems are logged, not thrown: the
   * checkpoint is saved by then. If the save fails, its temporary folder is removed and the
   * existing checkpoints are as they were.
   *
   * @param tensorFiles tensor maps by file name (plain names ending in {@code .safetensors}); each
   *     file gets the metadata {@code {"format": "pt"}}
   * @param jsonFiles JSON documents by file name (plain names ending in {@code .json})
   * @return the checkpoint folder
   * @throws IllegalArgumentException if the step is negative or a file name is not allowed
   */
  public Path save(
      long step,
      Map<String, SortedMap<String, TensorData>> tensorFiles,
      Map<String, JsonNode> jsonFiles)
      throws IOException {
    if (step < 0) {
      throw new IllegalArgumentException("step must not be negative: " + step);
    }
    SortedMap<String, SortedMap<String, TensorData>> tensors =
        checked(tensorFiles, CheckpointFiles.SAFETENSORS);
    SortedMap<String, JsonNode> json = checked(jsonFiles, CheckpointFiles.JSON);
    Instant start = Instant.now();
    if (!Files.isDirectory(dir)) {
      Files.createDirectories(dir);
      Path parent = dir.toAbsolutePath().getParent();
      if (parent != null) {
        CheckpointFiles.syncDirectory(parent);
      }
    }
    Path tmp = CheckpointFiles.temporarySibling(dir, step);
    Path target = dir.resolve(CheckpointFiles.folderName(step));
    Files.createDirectory(tmp);
    try {
      SortedMap<String, Manifest.Entry> entries = new TreeMap<>();
      for (Map.Entry<String, SortedMap<String, TensorData>> e : tensors.entrySet()) {
        Path file = tmp.resolve(e.getKey());
        SafetensorsWriter.write(file, e.getValue(), TENSOR_METADATA);
        entries.put(e.getKey(), Manifest.Entry.of(file));
      }
      for (Map.Entry<String, JsonNode> e : json.entrySet()) {
        Path file = tmp.resolve(e.getKey());
        AtomicFile.write(
            file,
            CheckpointFiles.MAPPER
                .writerWithDefaultPrettyPrinter()
                .writeValueAsBytes(e.getValue()));
        entries.put(e.getKey(), Manifest.Entry.of(file));
      }
      Manifest manifest = new Manifest(step, Instant.now(), entries);
      AtomicFile.write(tmp.resolve(CheckpointFiles.MANIFEST), manifest.toJson());
      CheckpointFiles.syncDirectory(tmp);
      commit(tmp, target, step);
    } catch (IOException | RuntimeException | Error e) {
      try {
        CheckpointFiles.deleteRecursively(tmp);
      } catch (IOException suppressed) {
        e.addSuppressed(suppressed);
      }
      throw e;
    }
    prune(step);
    removeStaleTemporaries(start);
    return target;
  }

  /**
   * The newest checkpoint whose manifest parses and whose every listed file exists with the listed
   * size and SHA-256 (each file is read fully). Each newer one that fails is reported through
   * {@code report} with its folder name and what is wrong, and renamed to {@code
   * <name>.corrupt-<UTC timestamp>} so that it is neither tried again nor pruned. A folder without
   * a manifest (incomplete) is reported and left alone; temporary folders are ignored.
   *
   * @return empty if there is no valid checkpoint (or no folder at all)
   */
  public Optional<Checkpoint> latestValid(Consumer<String> report) throws IOException {
    Objects.requireNonNull(report, "report");
    List<Path> folders = CheckpointFiles.stepFolders(dir);
    folders.sort(Comparator.comparingLong(CheckpointFiles::stepOf).reversed());
    for (int i = 0; i < folders.size(); i++) {
      Path folder = folders.get(i);
      String name = folder.getFileName().toString();
      if (!CheckpointFiles.hasManifest(folder)) {
        report.accept("checkpoint " + name + " is incomplete (no manifest.json); ignoring it");
        continue;
      }
      Optional<String> problem = Manifest.verify(folder);
      if (problem.isEmpty()) {
        return Optional.of(new Checkpoint(CheckpointFiles.stepOf(folder), folder));
      }
      String next = "no older checkpoint to try";
      for (Path older : folders.subList(i + 1, folders.size())) {
        if (CheckpointFiles.hasManifest(older)) {
          next = "trying " + older.getFileName();
          break;
        }
      }
      report.accept(
          "checkpoint "
              + name
              + " is corrupt ("
              + problem.get()
              + "); "
              + moveAside(folder)
              + next);
    }
    return Optional.empty();
  }

  /** Steps of the complete checkpoints (manifest present, not verified), ascending. */
  public List<Long> steps() throws IOException {
    List<Long> steps = new ArrayList<>();
    for (Path folder : CheckpointFiles.stepFolders(dir)) {
      if (CheckpointFiles.hasManifest(folder)) {
        steps.add(CheckpointFiles.stepOf(folder));
      }
    }
    steps.sort(null);
    return steps;
  }

  private static <V> SortedMap<String, V> checked(Map<String, V> files, String suffix) {
    Objects.requireNonNull(files, suffix + " files");
    SortedMap<String, V> copy = new TreeMap<>();
    for (Map.Entry<String, V> e : files.entrySet()) {
      String name = CheckpointFiles.checkName(e.getKey(), suffix);
      copy.put(name, Objects.requireNonNull(e.getValue(), () -> "content of " + name));
    }
    return copy;
  }

  /** Renames the complete {@code tmp} to {@code target}, replacing an existing one safely. */
  private void commit(Path tmp, Path target, long step) throws IOException {
    Path old = null;
    if (Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
      old = CheckpointFiles.temporarySibling(dir, step);
      Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
    }
    try {
      Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException | RuntimeException e) {
      if (old != null) {
        try {
          Files.move(old, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException suppressed) {
          e.addSuppressed(suppressed);
        }
      }
      throw e;
    }
    CheckpointFiles.syncDirectory(dir);
    if (old != null) {
      delete(old);
    }
  }

  /**
   * Keeps the newest {@code keep} valid checkpoints and the one just saved; leaves invalid ones.
   */
  private void prune(long saved) {
    List<Long> steps;
    try {
      steps = steps();
    } catch (IOException e) {
      LOG.warn("cannot list checkpoints in {} to prune them: {}", dir, e.toString());
      return;
    }
    int valid = 0;
    for (Long step : steps.reversed()) {
      Path folder = dir.resolve(CheckpointFiles.folderName(step));
      if (step == saved) {
        valid++;
      } else if (valid >= keep) {
        // rename first so that an interrupted delete leaves a temporary folder, not a bad
        // checkpoint
        Path doomed = CheckpointFiles.temporarySibling(dir, step);
        try {
          Files.move(folder, doomed, StandardCopyOption.ATOMIC_MOVE);
          CheckpointFiles.syncDirectory(dir);
        } catch (IOException e) {
          LOG.warn("cannot prune checkpoint {}: {}", folder, e.toString());
          continue;
        }
        delete(doomed);
      } else if (Manifest.verify(folder).isEmpty()) {
        valid++;
      }
    }
  }

  private void removeStaleTemporaries(Instant before) {
    try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
      for (Path p : entries) {
        if (CheckpointFiles.isTemporary(p.getFileName().toString())
            && Files.getLastModifiedTime(p, LinkOption.NOFOLLOW_LINKS)
                .toInstant()
                .isBefore(before)) {
          delete(p);
        }
      }
    } catch (IOException e) {
      LOG.warn("cannot clean temporary folders in {}: {}", dir, e.toString());
    }
  }

  private static void delete(Path p) {
    try {
      CheckpointFiles.deleteRecursively(p);
    } catch (IOException e) {
      LOG.warn("cannot delete {}; the next save retries: {}", p, e.toString());
    }
  }

  /** Renames a corrupt checkpoint aside; says what happened, for the report. */
  private String moveAside(Path folder) {
    String base = folder.getFileName() + ".corrupt-" + STAMP.format(Instant.now());
    Path aside = dir.resolve(base);
    for (int n = 2; Files.exists(aside, LinkOption.NOFOLLOW_LINKS); n++) {
      aside = dir.resolve(base + "-" + n);
    }
    try {
      Files.move(folder, aside, StandardCopyOption.ATOMIC_MOVE);
      CheckpointFiles.syncDirectory(dir);
      return "moved to " + aside.getFileName() + "; ";
    } catch (IOException e) {
      return "could not move it aside (" + e + "); ";
    }
  }
}
