package dev.troupe.pipeline.safetensors;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Set;

/** Something that yields named tensors: one file or a sharded checkpoint. */
public interface TensorSource extends AutoCloseable {

  /** The tensor names, sorted (deterministic iteration order). */
  Set<String> names();

  /**
   * Where and what a tensor is.
   *
   * @throws java.util.NoSuchElementException naming the tensor and this source if absent
   */
  TensorInfo info(String name);

  /**
   * A tensor's bytes: read-only, {@link java.nio.ByteOrder#LITTLE_ENDIAN}, position 0, limit equal
   * to {@link TensorInfo#byteLength()}. Memory-mapped on first use and not copied; each call
   * returns an independent view of the same mapping.
   *
   * @throws java.util.NoSuchElementException naming the tensor and this source if absent
   * @throws java.io.UncheckedIOException wrapping a {@link SafetensorsException} if the tensor is 2
   *     GiB or larger, or wrapping the I/O error if the mapping fails
   * @throws IllegalStateException if this source is closed
   */
  ByteBuffer data(String name);

  /**
   * Copies a tensor's bytes into {@code dst} (from its position; exactly {@link
   * TensorInfo#byteLength()} bytes) with ordinary reads, not a mapping: the bytes pass through the
   * page cache, which is not counted in this process's resident memory, where mapped pages that
   * were read stay resident as long as the mapping lives. For weights that are copied once.
   *
   * @throws java.util.NoSuchElementException naming the tensor and this source if absent
   * @throws IOException if reading fails or the file ends early
   * @throws IllegalArgumentException if {@code dst} has less room than the tensor
   * @throws IllegalStateException if this source is closed
   */
  void read(String name, ByteBuffer dst) throws IOException;

  /** The file, or for a sharded checkpoint the folder that holds it. */
  Path path();

  /** Releases the open files. Buffers already returned by {@link #data} stay valid. */
  @Override
  void close() throws IOException;
}
