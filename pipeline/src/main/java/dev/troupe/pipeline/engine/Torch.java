package dev.troupe.pipeline.engine;

import dev.troupe.pipeline.safetensors.DType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.function.Supplier;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * The thin layer between Troupe and JavaCPP's libtorch API: conversions between Java arrays,
 * safetensors bytes and tensors. Every method copies; no tensor returned here aliases Java or
 * mapped memory, so callers may drop their buffers at once.
 */
public final class Torch {
  static {
    Natives.ensureLoaded();
    NativeHeap.prepare();
  }

  private Torch() {}

  /** Makes sure libtorch is loaded (safely, see {@link Natives}). */
  public static void init() {
    // the static initializer did the work
  }

  /**
   * Held while seeding libtorch's default CPU generator and drawing from it where the draws must be
   * reproducible: that generator is one per process, shared by every thread.
   */
  public static final Object GENERATOR = new Object();

  /**
   * Each thread's own CPU generator, for the draws of training (dropout masks): ranks of a plan
   * that train on threads of one process must not share libtorch's default generator, whose draws
   * would interleave. Held for the thread's life (a few KiB of generator state).
   */
  private static final ThreadLocal<GeneratorOptional> THREAD_GENERATOR =
      ThreadLocal.withInitial(
          () -> {
            Generator g = torch.make_generator_cpu();
            g.retainReference(); // outlives whatever PointerScope is open on first use
            GeneratorOptional o = new GeneratorOptional(g);
            o.retainReference();
            return o;
          });

  /** Seeds this thread's generator ({@link #dropout} draws from it). */
  public static void seedThread(long seed) {
    THREAD_GENERATOR.get().get().set_current_seed(seed);
  }

  /**
   * Dropout with probability {@code p} (training), its mask drawn from this thread's generator: the
   * computation of libtorch's {@code dropout(x, p, true)} on a CPU tensor, so with the same seed it
   * draws the same mask as that does from the default generator.
   */
  public static Tensor dropout(Tensor x, double p) {
    Tensor noise = torch.empty_like(x).bernoulli_(1 - p, THREAD_GENERATOR.get());
    noise.div_(scalar(1 - p));
    return x.mul(noise);
  }

  /**
   * Dropout on {@code x}, the slice {@code [start, start + x.size(-1))} of a last dimension of
   * {@code full} features (a tensor-parallel shard's input): the mask is drawn for all of them and
   * sliced, so each shard applies its part of the mask the whole layer would draw.
   */
  public static Tensor dropout(Tensor x, double p, long start, long full) {
    long width = x.size(x.dim() - 1);
    if (start == 0 && full == width) return dropout(x, p);
    long[] shape = shape(x);
    shape[shape.length - 1] = full;
    Tensor all = torch.empty(shape, x.options(), new MemoryFormatOptional());
    Tensor noise = all.bernoulli_(1 - p, THREAD_GENERATOR.get()).narrow(x.dim() - 1, start, width);
    return x.mul(noise.div(scalar(1 - p)));
  }

  /** The libtorch scalar type of a safetensors dtype. */
  public static ScalarType scalarType(DType dtype) {
    return switch (dtype) {
      case F32 -> ScalarType.Float;
      case F16 -> ScalarType.Half;
      case BF16 -> ScalarType.BFloat16;
      case I8 -> ScalarType.Char;
      case U8 -> ScalarType.Byte;
      case I32 -> ScalarType.Int;
      case I64 -> ScalarType.Long;
    };
  }

  /**
   * The safetensors dtype of a libtorch scalar type. Compared by value: a {@code ScalarType} that
   * JavaCPP returns from native code (e.g. {@code Tensor.scalar_type()}) is not the enum constant
   * it names, only carries its value.
   */
  public static DType dtype(ScalarType type) {
    ScalarType canonical = null;
    for (ScalarType t : ScalarType.values()) {
      if (t.value == type.value) {
        canonical = t;
        break;
      }
    }
    if (canonical == null) throw new IllegalArgumentException("unknown scalar type " + type.value);
    return switch (canonical) {
      case Float -> DType.F32;
      case Half -> DType.F16;
      case BFloat16 -> DType.BF16;
      case Char -> DType.I8;
      case Byte -> DType.U8;
      case Int -> DType.I32;
      case Long -> DType.I64;
      default -> throw new IllegalArgumentException("no safetensors dtype for " + type);
    };
  }

  /**
   * Marks a tensor as owned by a long-lived object (weights, adapters): it survives the close of
   * any {@link org.bytedeco.javacpp.PointerScope} it was made in, and is freed by its owner's
   * {@code close()}. Returns the tensor.
   */
  public static Tensor keep(Tensor t) {
    t.retainReference();
    return t;
  }

  /**
   * A handle of its own to {@code t}'s tensor, freed by its {@code close()} alone. {@code keep(new
   * Tensor(t))} inside an open {@link org.bytedeco.javacpp.PointerScope} is not: the scope holds a
   * reference too (a scope retains what it attaches, and {@code close()} only releases one
   * reference), so the tensor would live until that scope closes. Gradient hooks run inside the
   * trainer's microbatch scope and need this.
   */
  public static Tensor own(org.bytedeco.pytorch.TensorBase t) {
    try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope()) {
      return keep(new Tensor(t));
    }
  }

  /**
   * Gives a tensor held with {@link #keep} to the innermost open {@link
   * org.bytedeco.javacpp.PointerScope} (which then frees it), or leaves it to the caller where none
   * is open. Returns the tensor.
   */
  public static Tensor handOver(Tensor kept) {
    org.bytedeco.javacpp.PointerScope scope = org.bytedeco.javacpp.PointerScope.getInnerScope();
    if (scope != null) {
      scope.attach(kept);
      kept.releaseReference();
    }
    return kept;
  }

  /**
   * Runs {@code body} in a {@link org.bytedeco.javacpp.PointerScope} of its own and gives its
   * result to the caller's innermost scope: the handles of everything else it made are freed on
   * return, not when the caller's scope closes. Where autograd saved one of them for the backward,
   * its own reference keeps the tensor alive. Inside one decoder layer's scope the intermediates of
   * bench-m's layer (lora-int8) came to 157 MiB at once, of which autograd kept 20.
   */
  public static Tensor scoped(Supplier<Tensor> body) {
    Tensor out;
    try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope()) {
      out = keep(body.get());
    }
    return handOver(out);
  }

  /** A scalar for libtorch's arithmetic. */
  public static Scalar scalar(double value) {
    return new Scalar(value);
  }

  /** An integer scalar, for integer and bitwise arithmetic. */
  public static Scalar intScalar(long value) {
    return new Scalar(value);
  }

  /** Copies little-endian tensor bytes (e.g. a mapped safetensors region) into a new tensor. */
  public static Tensor fromBytes(ByteBuffer bytes, DType dtype, long... shape) {
    long numel = 1;
    for (long d : shape) numel *= d;
    if (bytes.remaining() != numel * dtype.byteSize()) {
      throw new IllegalArgumentException(
          "byte length "
              + bytes.remaining()
              + " does not match "
              + dtype
              + " shape "
              + java.util.Arrays.toString(shape));
    }
    Tensor out =
        torch.empty(shape, new TensorOptions(scalarType(dtype)), new MemoryFormatOptional());
    if (numel == 0) return out;
    ByteBuffer src = bytes.duplicate();
    if (!src.isDirect()) {
      ByteBuffer direct = ByteBuffer.allocateDirect(src.remaining());
      direct.put(src).flip();
      src = direct;
    }
    try (BytePointer from = new BytePointer(src)) {
      BytePointer to = new BytePointer(out.data_ptr());
      to.capacity(numel * dtype.byteSize());
      org.bytedeco.javacpp.Pointer.memcpy(to, from.position(0), numel * dtype.byteSize());
    }
    return out;
  }

  /** A float32 tensor with these values. */
  public static Tensor fromFloats(float[] values, long... shape) {
    Tensor out =
        torch.empty(shape, new TensorOptions(ScalarType.Float), new MemoryFormatOptional());
    if (values.length > 0) out.data_ptr_float().put(values);
    return out;
  }

  /** An int64 tensor with these values (token ids). */
  public static Tensor fromLongs(long[] values, long... shape) {
    Tensor out = torch.empty(shape, new TensorOptions(ScalarType.Long), new MemoryFormatOptional());
    if (values.length > 0) out.data_ptr_long().put(values);
    return out;
  }

  /** The shape of a tensor. */
  public static long[] shape(Tensor t) {
    long[] s = new long[(int) t.dim()];
    for (int i = 0; i < s.length; i++) s[i] = t.size(i);
    return s;
  }

  /** The values of a tensor as float32, in row-major order. */
  public static float[] toFloats(Tensor t) {
    try (Tensor f = t.to(ScalarType.Float).contiguous()) {
      long n = f.numel();
      if (n > Integer.MAX_VALUE)
        throw new IllegalArgumentException("tensor too large for a Java array: " + n);
      float[] out = new float[(int) n];
      if (n > 0) {
        FloatPointer p = f.data_ptr_float();
        p.get(out);
      }
      return out;
    }
  }

  /** The values of an integer tensor as longs. */
  public static long[] toLongs(Tensor t) {
    try (Tensor l = t.to(ScalarType.Long).contiguous()) {
      long[] out = new long[(int) l.numel()];
      if (out.length > 0) {
        LongPointer p = l.data_ptr_long();
        p.get(out);
      }
      return out;
    }
  }

  /** A copy of the tensor's bytes, little-endian, contiguous, in its own dtype. */
  public static ByteBuffer toBytes(Tensor t) {
    try (Tensor c = t.contiguous()) {
      long n = c.nbytes();
      ByteBuffer out = ByteBuffer.allocate(Math.toIntExact(n)).order(ByteOrder.LITTLE_ENDIAN);
      if (n > 0) {
        BytePointer p = new BytePointer(c.data_ptr());
        p.capacity(n);
        p.get(out.array());
      }
      return out;
    }
  }
}
