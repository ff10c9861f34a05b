package dev.troupe.pipeline.quant;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Dispatcher;
import org.bytedeco.pytorch.IValue;
import org.bytedeco.pytorch.IValueVector;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.OperatorHandle;
import org.bytedeco.pytorch.ScalarOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * A frozen weight matrix [rows, cols] held quantized. Nothing dense is kept: {@link #dequantize}
 * makes a new tensor on every call, which the caller frees after use.
 *
 * <p>INT8: {@code q = round(w / s)} clamped to [-127, 127] with {@code s = max|w_row| / 127}
 * rounded up to the nearest bf16 value (8 significant bits), so that a bf16 product can take the
 * codes as they are and scale its output by an exact {@code s} (see {@link #scalesAfterProduct}).
 * INT4 and NF4: rows are cut into groups of {@link #GROUP} consecutive values (the last group
 * padded with zeros where {@code cols} is not a multiple), each with {@code s = max|w_group|}; INT4
 * stores {@code round(7 w / s)} in -8..7, NF4 the index of the nearest NormalFloat4 code of {@code
 * w / s}; the two 4-bit codes of a byte are (low nibble) an even and (high nibble) the following
 * odd column. Dequantization is {@code table[code] * scale}, in FP32, then cast to the asked dtype.
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
  private final Tensor table; // FP32 [256, 2] code values of each byte (4-bit formats)
  // INT8: the codes as libtorch's per-channel qint8 tensor, which dequantizes in one pass; data is
  // a view of its bytes. null in the 4-bit formats.
  private final Tensor packed;
  // INT8: the scales [rows] in bf16 (exact, see the class comment). null in the 4-bit formats.
  private final Tensor bf16Scales;

  private QuantizedTensor(
      QuantFormat format,
      long rows,
      long cols,
      Tensor data,
      Tensor scales,
      Tensor table,
      Tensor packed) {
    this.format = format;
    this.rows = rows;
    this.cols = cols;
    this.data = data;
    this.scales = scales;
    this.table = table;
    this.packed = packed;
    this.bf16Scales =
        format == QuantFormat.INT8 ? Torch.keep(scales.view(-1).to(ScalarType.BFloat16)) : null;
  }

  private static final OperatorHandle MAKE_PER_CHANNEL = perChannelOperator();

  /** The operator, or null in a libtorch without quantized tensors (the codes are kept plain). */
  private static OperatorHandle perChannelOperator() {
    Torch.init();
    try {
      OperatorHandle op =
          Dispatcher.singleton().findSchemaOrThrow("aten::_make_per_channel_quantized_tensor", "");
      op.retainReference(); // outlives whatever PointerScope is open on first use
      return op;
    } catch (RuntimeException e) {
      return null;
    }
  }

  /**
   * INT8 {@code codes} [rows, cols] with FP32 {@code scales} [rows, 1] as a per-channel qint8
   * tensor (a copy of the codes; the scales in FP64, zero points 0), kept beyond the caller's
   * scope. Its {@code dequantize()} computes {@code code × scale} exactly (7 × 24 bits) and rounds
   * once to FP32: the values of the FP32 product {@code float(code) · scale}, in one pass.
   */
  private static Tensor perChannel(Tensor codes, Tensor scales) {
    try (PointerScope scope = new PointerScope()) {
      IValueVector stack =
          new IValueVector(
              new IValue(codes),
              new IValue(scales.view(-1).to(ScalarType.Double)),
              new IValue(torch.zeros(codes.size(0)).to(ScalarType.Long)),
              new IValue(0L));
      MAKE_PER_CHANNEL.callBoxed(stack);
      // toTensor() refers into the stack, which this scope frees: a handle of its own
      return Torch.keep(new Tensor(stack.get(0).toTensor()));
    }
  }

  /** Values quantized or dequantized at a time: temporaries stay around 1 MiB of FP32. */
  private static final long BLOCK_VALUES = 1L << 18;

  /**
   * Quantizes {@code weight}, a 2-D floating-point tensor (not changed, not kept), a block of rows
   * at a time so that the temporaries stay small.
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
    boolean int8 = format == QuantFormat.INT8;
    long padded = int8 ? cols : (cols + GROUP - 1) / GROUP * GROUP;
    Tensor data =
        Torch.keep(
            torch.empty(
                new long[] {rows, int8 ? cols : padded / 2},
                new TensorOptions(int8 ? ScalarType.Char : ScalarType.Byte),
                new MemoryFormatOptional()));
    Tensor scales =
        Torch.keep(
            torch.empty(
                int8 ? new long[] {rows, 1} : new long[] {rows, padded / GROUP, 1},
                new TensorOptions(ScalarType.Float),
                new MemoryFormatOptional()));
    Tensor lut = int8 ? null : pairTable(format);
    Tensor mids = format == QuantFormat.NF4 ? Torch.keep(nf4Midpoints()) : null;
    long block = Math.max(1, BLOCK_VALUES / padded);
    try {
      for (long r0 = 0; r0 < rows; r0 += block) {
        long n = Math.min(block, rows - r0);
        try (PointerScope scope = new PointerScope()) {
          Tensor w = weight.narrow(0, r0, n).to(ScalarType.Float).contiguous();
          if (int8) {
            Tensor amax = torch.amax(torch.abs(w), new long[] {1}, true);
            Tensor s =
                roundUpToBf16(
                    torch.clamp_min(amax.div(Torch.scalar(127.0)), Torch.scalar(Float.MIN_NORMAL)));
            Tensor q =
                torch.clamp(
                    torch.round(w.div(s)),
                    new ScalarOptional(Torch.scalar(-127.0)),
                    new ScalarOptional(Torch.scalar(127.0)));
            data.narrow(0, r0, n).copy_(q);
            scales.narrow(0, r0, n).copy_(s);
            continue;
          }
          if (padded != cols) {
            w = torch.constant_pad_nd(w, new long[] {0, padded - cols}, Torch.scalar(0.0));
          }
          Tensor groups = w.view(n, padded / GROUP, GROUP);
          Tensor s =
              torch.clamp_min(
                  torch.amax(torch.abs(groups), new long[] {2}, true),
                  Torch.scalar(Float.MIN_NORMAL));
          Tensor normalized = groups.div(s); // in [-1, 1]
          Tensor codes;
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
            codes = torch.bucketize(normalized.contiguous(), mids, true, false);
          }
          Tensor c = codes.to(ScalarType.Byte).view(n, padded / 2, 2);
          data.narrow(0, r0, n)
              .copy_(
                  torch.bitwise_or(
                      c.select(2, 0),
                      torch.bitwise_left_shift(c.select(2, 1), Torch.intScalar(4))));
          scales.narrow(0, r0, n).copy_(s);
        }
      }
    } finally {
      if (mids != null) mids.close();
    }
    if (!int8 || MAKE_PER_CHANNEL == null) {
      return new QuantizedTensor(format, rows, cols, data, scales, lut, null);
    }
    Tensor packed = perChannel(data, scales);
    data.close();
    Tensor view =
        Torch.keep(
            torch.from_blob(
                packed.mutable_data_ptr(),
                new long[] {rows, cols},
                new TensorOptions(ScalarType.Char)));
    return new QuantizedTensor(format, rows, cols, view, scales, null, packed);
  }

  /**
   * Positive finite FP32 values rounded up to the nearest value with 8 significant bits (a bf16
   * value), as FP32: the low 16 bits of each value's bits carried into the high 16, then cleared.
   */
  private static Tensor roundUpToBf16(Tensor positive) {
    return positive
        .contiguous()
        .view(ScalarType.Int)
        .add(Torch.intScalar(0xFFFF))
        .bitwise_and(Torch.intScalar(0xFFFF0000))
        .view(ScalarType.Float);
  }

  /** The value of 4-bit code {@code code} (0..15) before scaling. */
  private static float codeValue(QuantFormat format, int code) {
    return format == QuantFormat.NF4 ? NF4_CODES[code] : (code - 8) / 7.0f;
  }

  /** The 15 points halfway between consecutive NF4 codes. */
  private static Tensor nf4Midpoints() {
    float[] mids = new float[15];
    for (int i = 0; i < mids.length; i++) mids[i] = (NF4_CODES[i] + NF4_CODES[i + 1]) / 2;
    return Torch.fromFloats(mids, mids.length);
  }

  private static final Tensor[] PAIR_TABLES = new Tensor[QuantFormat.values().length];

  /**
   * FP32 [256, 2]: the code values of a byte's low and high nibble, for one-gather decoding; one
   * per format, shared by every tensor and never freed (2 KiB).
   */
  private static synchronized Tensor pairTable(QuantFormat format) {
    Tensor table = PAIR_TABLES[format.ordinal()];
    if (table != null) return table;
    float[] values = new float[512];
    for (int b = 0; b < 256; b++) {
      values[2 * b] = codeValue(format, b & 15);
      values[2 * b + 1] = codeValue(format, b >>> 4);
    }
    table = Torch.keep(Torch.fromFloats(values, 256, 2));
    PAIR_TABLES[format.ordinal()] = table;
    return table;
  }

  /**
   * A new dense tensor [rows, cols] in {@code dtype}, freed with the caller's innermost open {@link
   * PointerScope} (or by the caller where none is open). Values are formed in FP32 and rounded once
   * to {@code dtype}.
   */
  public Tensor dequantize(ScalarType dtype) {
    Tensor out;
    try (PointerScope scope = new PointerScope()) {
      Tensor w;
      if (format == QuantFormat.INT8) {
        // code × scale in FP32 in one pass (see perChannel), rounded to the compute dtype once.
        // (Casting the codes to bf16 and scaling in place by the FP32 scales gives the same
        // values, but libtorch's mixed-dtype in-place product runs about half as fast; casting
        // them to FP32 and scaling in place is a pass more.)
        if (packed != null) {
          w = packed.dequantize();
        } else {
          w = data.to(ScalarType.Float);
          w.mul_(scales);
        }
        out = Torch.keep(dtype.value == ScalarType.Float.value ? w : w.to(dtype));
      } else {
        long padded = data.size(1) * 2;
        // one gather: each byte's two code values at once
        w = torch.embedding(table, data.to(ScalarType.Int));
        w = w.view(rows, padded / GROUP, GROUP);
        w.mul_(scales);
        w = w.view(rows, padded);
        if (padded != cols) w = w.narrow(1, 0, cols);
        out = Torch.keep(dtype.value == ScalarType.Float.value ? w.contiguous() : w.to(dtype));
      }
    }
    return Torch.handOver(out);
  }

  /**
   * Rows {@code ids} (int64, any shape) dequantized into a new tensor [ids..., cols] in {@code
   * dtype}: the lookup of an INT8 embedding, which dequantizes only the rows it is asked for. The
   * values are those of {@link #dequantize} at those rows. Freed like {@link #dequantize}'s result.
   *
   * @throws IllegalStateException for a format other than INT8
   */
  public Tensor rows(Tensor ids, ScalarType dtype) {
    if (format != QuantFormat.INT8) {
      throw new IllegalStateException("a row lookup needs INT8 codes, not " + format);
    }
    Tensor out;
    try (PointerScope scope = new PointerScope()) {
      Tensor flat = ids.reshape(-1);
      Tensor w = data.index_select(0, flat).to(ScalarType.Float);
      w.mul_(scales.index_select(0, flat));
      long[] idShape = ids.sizes().vec().get();
      long[] shape = java.util.Arrays.copyOf(idShape, idShape.length + 1);
      shape[idShape.length] = cols;
      w = w.view(shape);
      out = Torch.keep(dtype.value == ScalarType.Float.value ? w : w.to(dtype));
    }
    return Torch.handOver(out);
  }

  /**
   * Whether a product in {@code dtype} should take this weight as {@link #codes} and multiply its
   * output channels by {@link #bf16Scales} afterwards, rather than multiply by {@link
   * #dequantize}'s weight: INT8 in bf16. {@code x · (s q)ᵀ = (x · qᵀ) s} per output channel; the
   * codes (integers up to 127) and the scales (see the class comment) are exact in bf16, so the
   * product is rounded where the dequantized one rounds each weight, to the same error (within 1%
   * on bench-m's shapes), and the weight takes one cast of 3 bytes a value instead of the
   * dequantization's two passes of 11: on bench-m's shapes 0.3-1.1 ms less per product, forward and
   * backward. Not in fp16, whose range an unscaled product {@code x · qᵀ}, up to {@code 127 / s}
   * times the output, could leave; FP32 keeps the dequantized weight too (measured only in bf16).
   */
  public boolean scalesAfterProduct(ScalarType dtype) {
    return format == QuantFormat.INT8 && dtype.value == ScalarType.BFloat16.value;
  }

  /**
   * The INT8 codes as a new tensor [rows, cols] in {@code dtype} (exact for any floating dtype),
   * freed like {@link #dequantize}'s result.
   *
   * @throws IllegalStateException for a format other than INT8
   */
  public Tensor codes(ScalarType dtype) {
    if (format != QuantFormat.INT8) {
      throw new IllegalStateException("only INT8 codes are values, not " + format);
    }
    return data.to(dtype);
  }

  /**
   * The INT8 scales [rows] in bf16, exact; held by this tensor (not to be closed by the caller).
   *
   * @throws IllegalStateException for a format other than INT8
   */
  public Tensor bf16Scales() {
    if (format != QuantFormat.INT8) {
      throw new IllegalStateException("scales per row are INT8's, not " + format + "'s");
    }
    return bf16Scales;
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

  /** Bytes held: codes and scales (the shared code table is not counted). */
  public long bytes() {
    return data.nbytes() + scales.nbytes() + (bf16Scales == null ? 0 : bf16Scales.nbytes());
  }

  @Override
  public void close() {
    data.close(); // a view of packed's bytes in INT8: closed first
    scales.close();
    if (bf16Scales != null) bf16Scales.close();
    if (packed != null) packed.close();
  }
}
