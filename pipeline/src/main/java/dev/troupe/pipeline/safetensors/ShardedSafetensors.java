package dev.troupe.pipeline.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * A sharded checkpoint: a {@code <base>.safetensors.index.json} whose {@code weight_map} names, for
 * each tensor, the shard file (in the same folder) that holds it. Opening validates the index,
 * opens every shard and checks that each listed tensor is in its shard. Only the tensors of the
 * weight map are exposed.
 */
public final class ShardedSafetensors implements TensorSource {
  private final Path index;
  private final SortedMap<String, SafetensorsFile> byTensor;
  private final Map<String, SafetensorsFile> shards;

  private ShardedSafetensors(
      Path index,
      SortedMap<String, SafetensorsFile> byTensor,
      Map<String, SafetensorsFile> shards) {
    this.index = index;
    this.byTensor = byTensor;
    this.shards = shards;
  }

  /**
   * Opens the checkpoint described by {@code indexJson}.
   *
   * @throws SafetensorsException naming the index or a shard if anything is missing or malformed
   */
  public static ShardedSafetensors open(Path indexJson) throws IOException {
    if (!Files.isRegularFile(indexJson)) {
      throw new SafetensorsException(indexJson, "index file does not exist");
    }
    long size = Files.size(indexJson);
    if (size > Header.MAX_HEADER_BYTES) {
      throw new SafetensorsException(
          indexJson, "index is " + size + " bytes, over the limit of " + Header.MAX_HEADER_BYTES);
    }
    ObjectNode root = Json.parseObject(indexJson, "index", Files.readAllBytes(indexJson));
    JsonNode wm = root.get("weight_map");
    if (wm == null || !wm.isObject()) {
      throw new SafetensorsException(
          indexJson,
          "index has no \"weight_map\" object" + (wm == null ? "" : ": " + Json.show(wm)));
    }
    SortedMap<String, String> shardOf = new TreeMap<>();
    for (Map.Entry<String, JsonNode> e : wm.properties()) {
      JsonNode v = e.getValue();
      if (!v.isTextual() || !isPlainFileName(v.textValue())) {
        throw new SafetensorsException(
            indexJson,
            "weight_map entry for tensor "
                + e.getKey()
                + " is not a file name in the index's folder: "
                + Json.show(v));
      }
      shardOf.put(e.getKey(), v.textValue());
    }
    Path folder = indexJson.toAbsolutePath().getParent();
    Map<String, SafetensorsFile> shards = new TreeMap<>();
    try {
      SortedMap<String, SafetensorsFile> byTensor = new TreeMap<>();
      for (Map.Entry<String, String> e : shardOf.entrySet()) {
        SafetensorsFile shard = shards.get(e.getValue());
        if (shard == null) {
          Path p = folder.resolve(e.getValue());
          if (!Files.isRegularFile(p)) {
            throw new SafetensorsException(
                indexJson,
                "shard "
                    + e.getValue()
                    + " (listed for tensor "
                    + e.getKey()
                    + ") does not exist in "
                    + folder);
          }
          shard = SafetensorsFile.open(p);
          shards.put(e.getValue(), shard);
        }
        if (!shard.names().contains(e.getKey())) {
          throw new SafetensorsException(
              indexJson,
              "tensor "
                  + e.getKey()
                  + " is listed in shard "
                  + e.getValue()
                  + " but that shard does not contain it");
        }
        byTensor.put(e.getKey(), shard);
      }
      return new ShardedSafetensors(indexJson, Collections.unmodifiableSortedMap(byTensor), shards);
    } catch (IOException | RuntimeException e) {
      closeAll(shards.values(), e);
      throw e;
    }
  }

  private static boolean isPlainFileName(String s) {
    return !s.isEmpty()
        && !s.equals(".")
        && !s.equals("..")
        && s.indexOf('/') < 0
        && s.indexOf('\\') < 0
        && s.indexOf('\0') < 0;
  }

  private static void closeAll(Iterable<SafetensorsFile> files, Throwable into) {
    for (SafetensorsFile f : files) {
      try {
        f.close();
      } catch (IOException e) {
        into.addSuppressed(e);
      }
    }
  }

  /** The index file this checkpoint was opened from. */
  public Path indexFile() {
    return index;
  }

  /** The shard file that holds a tensor. */
  public Path shardOf(String name) {
    return shard(name).path();
  }

  private SafetensorsFile shard(String name) {
    SafetensorsFile f = byTensor.get(name);
    if (f == null) {
      throw new NoSuchElementException("no tensor '" + name + "' in " + index);
    }
    return f;
  }

  @Override
  public Set<String> names() {
    return byTensor.keySet();
  }

  /** The tensor's entry in its shard; offsets are relative to that shard's data section. */
  @Override
  public TensorInfo info(String name) {
    return shard(name).info(name);
  }

  @Override
  public ByteBuffer data(String name) {
    return shard(name).data(name);
  }

  @Override
  public void read(String name, ByteBuffer dst) throws IOException {
    shard(name).read(name, dst);
  }

  /** The folder that holds the index and the shards. */
  @Override
  public Path path() {
    Path parent = index.getParent();
    return parent != null ? parent : index.toAbsolutePath().getParent();
  }

  @Override
  public void close() throws IOException {
    IOException first = null;
    for (SafetensorsFile f : shards.values()) {
      try {
        f.close();
      } catch (IOException e) {
        if (first == null) {
          first = e;
        } else {
          first.addSuppressed(e);
        }
      }
    }
    if (first != null) {
      throw first;
    }
  }

  @Override
  public String toString() {
    return "ShardedSafetensors["
        + index
        + ", "
        + byTensor.size()
        + " tensors in "
        + shards.size()
        + " shards]";
  }
}
