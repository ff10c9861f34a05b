package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.safetensors.DType;
import dev.troupe.pipeline.safetensors.TensorInfo;
import dev.troupe.pipeline.safetensors.TensorSource;
import java.io.IOException;
import java.util.Arrays;
import java.util.NoSuchElementException;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * Reads named weights from a checkpoint into tensors of the compute dtype, checking each shape
 * against what the architecture expects and reading only the slice a tensor shard needs.
 */
public final class WeightReader {
  private final TensorSource source;
  private final ComputeDtype dtype;

  public WeightReader(TensorSource source, ComputeDtype dtype) {
    Torch.init(); // libtorch (and JavaCPP's own library) load under Natives' lock, never ad hoc
    this.source = source;
    this.dtype = dtype;
  }

  public boolean has(String name) {
    return source.names().contains(name);
  }

  /** The whole tensor. */
  public Tensor read(String name, long... expectedShape) throws ModelFormatException {
    return slice(name, expectedShape, -1, 0, 0);
  }

  /**
   * Rows or columns {@code [start, start+length)} along {@code dim} of a tensor whose full shape is
   * {@code expectedShape}. Only the slice is copied out of the (memory-mapped) file.
   */
  public Tensor slice(String name, long[] expectedShape, int dim, long start, long length)
      throws ModelFormatException {
    TensorInfo info;
    try {
      info = source.info(name);
    } catch (NoSuchElementException e) {
      throw new ModelFormatException(source.path(), "missing tensor " + name);
    }
    if (!Arrays.equals(info.shape(), expectedShape)) {
      throw new ModelFormatException(
          source.path(),
          name
              + " has shape "
              + Arrays.toString(info.shape())
              + " but the configuration implies "
              + Arrays.toString(expectedShape));
    }
    DType stored = info.dtype();
    if (stored != DType.F32 && stored != DType.F16 && stored != DType.BF16) {
      throw new ModelFormatException(
          source.path(), name + " is stored as " + stored + "; weights must be F32, F16 or BF16");
    }
    // Read (not mapped: mapped pages that were read would stay resident for as long as the
    // model is open) into native memory that is freed as soon as the copy below owns its data.
    try (BytePointer ptr = new BytePointer(info.byteLength())) {
      try {
        source.read(name, ptr.asByteBuffer());
      } catch (IOException e) {
        throw new ModelFormatException(
            source.path(), "cannot read " + name + ": " + e.getMessage());
      }
      try (Tensor view =
              torch.from_blob(ptr, expectedShape, new TensorOptions(Torch.scalarType(stored)));
          Tensor part = dim < 0 ? view.alias() : view.narrow(dim, start, length)) {
        Tensor owned = part.to(dtype.scalarType(), false, true, new MemoryFormatOptional());
        if (owned.is_contiguous()) return owned;
        try (owned) {
          return owned.contiguous();
        }
      }
    }
  }
}
