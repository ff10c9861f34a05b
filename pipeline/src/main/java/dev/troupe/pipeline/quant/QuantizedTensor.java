package dev.troupe.pipeline.quant;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.ScalarOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * A frozen weight matrix [rows, cols] held quantized. Nothing dense is kept: {@link #dequantize}
 * makes a new tensor on every call, which the caller frees after use.
 *
 * <p>INT8: {@code q = round(w / s)} clamped to [-127, 127] with {@code s = max|w_row| / 127}. INT4
 * and NF4: rows are cut into groups of {@link #GROUP} consecutive values (the last group padded
 * with zeros where {@code cols} is not a multiple), each with {@code s = max|w_group|}; INT4 stores
 * {@code round(7 w / s)} in -8..7, NF4 the index of the nearest NormalFloat4 code of {@code w / s};
 * the two 4-bit codes of a byte are (low nibble) an even and (high nibble) the following odd
 * column. Dequantization is {@code table[code] * scale}, in FP32, then cast to the asked dtype.
 */
public final class QuantizedTensor implements AutoCloseable {
  /** Values per scale in the 4-bit formats. */
  public static final int GROUP = 64;

  /** The NormalFloat4 code values of QLoRA (Dettmers et al. 2023), as bitsandbytes has them. */
  static final float[] NF4_CODES = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f
  };

  private final QuantFormat format;
  private final long rows;
  private final long cols;
  private final Tensor data;
  private final Tensor scales;
  private final Tensor table; // FP32 [16] code values (4-bit formats)

  private QuantizedTensor(
      QuantFormat format, long rows, long cols, Tensor data, Tensor scales, Tensor table) {
    this.format = format;
    this.rows = rows;
    this.cols = cols;
    this.data = data;
    this.scales = scales;
    this.table = table;
  }

  /**
   * Quantizes {@code weight}, a 2-D floating-point tensor (not changed, not kept).
   *
   * @throws IllegalArgumentException for {@link QuantFormat#NONE} or a tensor that is not 2-D
   */
  public static QuantizedTensor quantize(Tensor weight, QuantFormat format) {
    if (format == QuantFormat.NONE) throw new IllegalArgumentException("nothing to quantize");
    if (weight.dim() != 2) {
      throw new IllegalArgumentException("a weight matrix must be 2-D, got " + weight.dim() + "-D");
    }
    long rows = weight.size(0);
    long cols = weight.size(1);
    try (PointerScope scope = new PointerScope()) {
      Tensor w = weight.to(ScalarType.Float).contiguous();
      if (format == QuantFormat.INT8) {
        Tensor amax = torch.amax(torch.abs(w), new long[] {1}, true);
        Tensor s = torch.clamp_min(amax.div(Torch.scalar(127.0)), Torch.scalar(Float.MIN_NORMAL));
        Tensor q =
            torch
                .clamp(
                    torch.round(w.div(s)),
                    new ScalarOptional(Torch.scalar(-127.0)),
                    new ScalarOptional(Torch.scalar(127.0)))
                .to(ScalarType.Char);
        return new QuantizedTensor(
            format, rows, cols, Torch.keep(q), Torch.keep(s.contiguous()), null);
      }
      long padded = (cols + GROUP - 1) / GROUP * GROUP;
      if (padded != cols) {
        w = torch.constant_pad_nd(w, new long[] {0, padded - cols}, Torch.scalar(0.0));
      }
      Tensor groups = w.view(rows, padded / GROUP, GROUP);
      Tensor amax = torch.amax(torch.abs(groups), new long[] {2}, true);
      Tensor s = torch.clamp_min(amax, Torch.scalar(Float.MIN_NORMAL));
      Tensor normalized = groups.div(s); // in [-1, 1]
      Tensor codes;
      Tensor table = codeTable(format);
      if (format == QuantFormat.INT4) {
        // round(7 x) in -7..7, stored with offset 8 (code 0 = -8 is never produced)
        codes =
            torch
                .clamp(
                    torch.round(normalized.mul(Torch.scalar(7.0))),
                    new ScalarOptional(Torch.scalar(-8.0)),
                    new ScalarOptional(Torch.scalar(7.0)))
                .add(Torch.scalar(8.0));
      } else {
        // nearest code: count the midpoints below each value
        Tensor mids = table.narrow(0, 0, 15).add(table.narrow(0, 1, 15)).mul(Torch.scalar(0.5));
        codes = torch.bucketize(normalized.contiguous(), mids);
      }
      Tensor c = codes.to(ScalarType.Byte).view(rows, padded / 2, 2);
      Tensor packed =
          torch.bitwise_or(
              c.select(2, 0), torch.bitwise_left_shift(c.select(2, 1), Torch.intScalar(4)));
      return new QuantizedTensor(
          format,
          rows,
          cols,
          Torch.keep(packed.contiguous()),
          Torch.keep(s.contiguous()),
          Torch.keep(table));
    }
  }

  private static Tensor codeTable(QuantFormat format) {
    float[] values = new float[16];
    for (int i = 0; i < 16; i++) {
      values[i] = format == QuantFormat.NF4 ? NF4_CODES[i] : (i - 8) / 7.0f;
    }
    return Torch.fromFloats(values, 16);
  }

  /**
   * A new dense tensor [rows, cols] in {@code dtype}, freed with the caller's innermost open {@link
   * PointerScope} (or by the caller where none is open).
   */
  public Tensor dequantize(ScalarType dtype) {
    Tensor out;
    try (PointerScope scope = new PointerScope()) {
      Tensor w;
      if (format == QuantFormat.INT8) {
        w = data.to(ScalarType.Float).mul(scales);
      } else {
        long padded = data.size(1) * 2;
        Tensor lo = torch.bitwise_and(data, Torch.intScalar(15));
        Tensor hi = torch.bitwise_right_shift(data, Torch.intScalar(4));
        Tensor codes = torch.stack(new org.bytedeco.pytorch.TensorVector(lo, hi), 2);
        Tensor values = torch.take(table, codes.to(ScalarType.Long));
        w = values.view(rows, padded / GROUP, GROUP).mul(scales).view(rows, padded);
        if (padded != cols) w = w.narrow(1, 0, cols);
      }
      out = Torch.keep(w.to(dtype).contiguous());
    }
    return Torch.handOver(out);
  }

  public QuantFormat format() {
    return format;
  }

  public long rows() {
    return rows;
  }

  public long cols() {
    return cols;
  }

  /** Bytes held: codes and scales. */
  public long bytes() {
    return data.nbytes() + scales.nbytes() + (table == null ? 0 : table.nbytes());
  }

  @Override
  public void close() {
    data.close();
    scales.close();
    if (table != null) table.close();
  }
}
