package dev.troupe.pipeline.safetensors;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.troupe.pipeline.io.AtomicFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SortedMap;
import java.util.TreeMap;

/** Writes safetensors files and sharded checkpoints, atomically. */
public final class SafetensorsWriter {
  private SafetensorsWriter() {}

  /**
   * Writes atomically: to a temporary file in the same folder, fsync, then rename over the target
   * (so an existing file is never left half-written). Tensors are stored in sorted name order,
   * contiguous like the reference implementation; the header is padded with spaces so the data
   * section starts at a multiple of 8.
   *
   * @param metadata the {@code __metadata__} entries; {@code null} or empty for none
   * @throws SafetensorsException if the target folder does not exist or the write fails
   * @throws IllegalArgumentException if a tensor is named {@code __metadata__}
   */
  public static void write(
      Path file, SortedMap<String, TensorData> tensors, Map<String, String> metadata)
      throws IOException {
    Objects.requireNonNull(tensors, "tensors");
    ObjectNode header = Json.MAPPER.createObjectNode();
    if (metadata != null && !metadata.isEmpty()) {
      ObjectNode meta = header.putObject(Header.METADATA_KEY);
      new TreeMap<>(metadata)
          .forEach((k, v) -> meta.put(k, Objects.requireNonNull(v, "metadata value " + k)));
    }
    long offset = 0;
    for (Map.Entry<String, TensorData> e : tensors.entrySet()) {
      if (e.getKey().equals(Header.METADATA_KEY)) {
        throw new IllegalArgumentException("a tensor cannot be named " + Header.METADATA_KEY);
      }
      TensorData t = Objects.requireNonNull(e.getValue(), () -> "tensor " + e.getKey());
      ObjectNode entry = header.putObject(e.getKey());
      entry.put("dtype", t.dtype().code());
      ArrayNode shape = entry.putArray("shape");
      for (long d : t.shape()) {
        shape.add(d);
      }
      long end = offset + t.byteLength();
      entry.putArray("data_offsets").add(offset).add(end);
      offset = end;
    }
    byte[] json = Json.MAPPER.writeValueAsBytes(header);
    int padded = (json.length + 8 + 7) / 8 * 8 - 8;
    ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
    head.putLong(padded).put(json);
    while (head.hasRemaining()) {
      head.put((byte) ' ');
    }
    head.flip();
    List<ByteBuffer> parts = new ArrayList<>();
    parts.add(head);
    for (TensorData t : tensors.values()) {
      parts.add(t.bytes());
    }
    writeAtomically(file, parts);
  }

  /**
   * Writes a sharded checkpoint: shards named {@code <base>-00001-of-0000N.safetensors} plus {@code
   * <base>.safetensors.index.json} (weight_map + metadata.total_size). Tensors are packed in sorted
   * name order; a shard is closed when the next tensor would take its data over {@code
   * maxShardBytes} (a tensor larger than that gets a shard of its own). The index is written last,
   * so it only appears once every shard is in place.
   *
   * @throws SafetensorsException if the folder does not exist or a write fails
   * @throws IllegalArgumentException if {@code maxShardBytes} is not positive
   */
  public static void writeSharded(
      Path folder, String baseName, SortedMap<String, TensorData> tensors, long maxShardBytes)
      throws IOException {
    if (maxShardBytes <= 0) {
      throw new IllegalArgumentException("maxShardBytes must be positive: " + maxShardBytes);
    }
    if (!Files.isDirectory(folder)) {
      throw new SafetensorsException(folder, "folder does not exist");
    }
    List<SortedMap<String, TensorData>> shards = new ArrayList<>();
    SortedMap<String, TensorData> current = null;
    long currentBytes = 0;
    long total = 0;
    for (Map.Entry<String, TensorData> e : tensors.entrySet()) {
      long n = e.getValue().byteLength();
      if (current == null || (!current.isEmpty() && currentBytes + n > maxShardBytes)) {
        current = new TreeMap<>();
        shards.add(current);
        currentBytes = 0;
      }
      current.put(e.getKey(), e.getValue());
      currentBytes += n;
      total += n;
    }
    ObjectNode index = Json.MAPPER.createObjectNode();
    index.putObject("metadata").put("total_size", total);
    ObjectNode weightMap = index.putObject("weight_map");
    for (int i = 0; i < shards.size(); i++) {
      String name =
          String.format(
              java.util.Locale.ROOT, "%s-%05d-of-%05d.safetensors", baseName, i + 1, shards.size());
      write(folder.resolve(name), shards.get(i), null);
      for (String tensor : shards.get(i).keySet()) {
        weightMap.put(tensor, name);
      }
    }
    byte[] json = Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(index);
    writeAtomically(
        folder.resolve(baseName + ".safetensors.index.json"), List.of(ByteBuffer.wrap(json)));
  }

  /** Writes {@code parts} atomically ({@link AtomicFile}); errors name the file. */
  static void writeAtomically(Path file, List<ByteBuffer> parts) throws IOException {
    Path dir = file.toAbsolutePath().getParent();
    if (dir == null || !Files.isDirectory(dir)) {
      throw new SafetensorsException(file, "cannot write: folder " + dir + " does not exist");
    }
    try {
      AtomicFile.write(file, parts);
    } catch (IOException e) {
      throw new SafetensorsException(file, "write failed: " + e, e);
    }
  }
}
