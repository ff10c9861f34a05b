package dev.troupe.pipeline.engine;

import java.util.function.Supplier;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.openblas.global.openblas_nolapack;
import org.bytedeco.openblas.presets.openblas_nolapack.MklSetNumThreadsLocal;
import org.bytedeco.openblas.presets.openblas_nolapack.SetNumThreads;
import org.bytedeco.pytorch.global.torch;

/**
 * How many threads OpenBLAS, which libtorch sends its FP32 products to on the CPU, splits each
 * product over. This OpenBLAS runs threads of its own (it is not built with OpenMP), beside
 * libtorch's OpenMP pool that runs everything else, and its workers spin between calls. The count
 * is per process.
 */
public final class BlasThreads {
  static {
    Torch.init(); // loads libtorch, and OpenBLAS with it
  }

  private BlasThreads() {}

  /**
   * {@code openblas_set_num_threads} called directly: the presets' {@code blas_set_num_threads}
   * looks four symbols up in every loaded library on each call (MKL's, then OpenBLAS's), 0.6-2 ms a
   * call here, where the function itself takes microseconds. Null where the symbol is missing.
   */
  private static final SetNumThreads SET = direct();

  private static SetNumThreads direct() {
    Pointer address = Loader.addressof("openblas_set_num_threads");
    if (address == null || address.isNull()) return null;
    SetNumThreads f = new SetNumThreads() {}.put(address);
    f.retainReference(); // outlives whatever PointerScope is open on first use
    return f;
  }

  /**
   * The exponent of the cycles OpenBLAS's idle workers spin before they sleep, as OpenBLAS read it
   * from its environment ({@code openblas_thread_timeout()}); 0 where none was set (OpenBLAS's
   * built-in default, 28), -1 where this BLAS has no such setting. {@link Natives} sets {@link
   * Natives#OPENBLAS_THREAD_TIMEOUT} unless the user chose one.
   */
  public static int spinTimeoutExponent() {
    Pointer address = Loader.addressof("openblas_thread_timeout");
    if (address == null || address.isNull()) return -1;
    // an int(void) function through the presets' int(int) pointer: the argument goes unread
    return new MklSetNumThreadsLocal() {}.put(address).call(0);
  }

  private static final Object LOCK = new Object();

  /** The count Troupe last set outside single-threaded sections; 0 before it set any. */
  private static int outside;

  /** Open {@link #onCallingThread} sections, over all threads. */
  private static int singleDepth;

  private static void set(int threads) {
    if (SET != null) {
      SET.call(threads);
    } else {
      openblas_nolapack.blas_set_num_threads(threads);
    }
  }

  /**
   * Sizes OpenBLAS's thread pool for the dtype a CPU model computes in: FP32 and fp16 (whose
   * products run in FP32 on the CPU) use all of libtorch's threads. In bf16 the few FP32 products
   * left are small and run inside libtorch's own parallel loops: there OpenBLAS runs on the calling
   * thread alone, because its spinning workers otherwise took up to 45% of a 2-core machine's
   * samples away from the bf16 work (perf, bench-s lora-bf16: 3000 against 4200 tokens/s). The last
   * model loaded sets it.
   */
  public static void size(ComputeDtype dtype) {
    int threads = dtype == ComputeDtype.BF16 ? 1 : torch.get_num_threads();
    synchronized (LOCK) {
      outside = threads;
      if (singleDepth == 0) set(threads); // else when the last section ends
    }
  }

  /**
   * Runs {@code body} with OpenBLAS on each calling thread alone, for libtorch kernels that call
   * BLAS from inside their own parallel loops (the CPU flash-attention kernel multiplies block by
   * block on every OpenMP thread). Each of those products would otherwise split itself over
   * OpenBLAS's workers again: on two cores four threads then wait on each other. The kernel's
   * forward and backward at bench-m's size (4 × 16 heads × 256 × 64, FP32, best of 10) took 71-74
   * ms that way and take 41-44 ms like this. Sections on several threads nest: the count comes back
   * when the last one ends, and meanwhile a product on another thread also runs on its calling
   * thread alone (the same result, more slowly). Before a model has sized the pool, {@code body}
   * just runs.
   */
  public static <T> T onCallingThread(Supplier<T> body) {
    synchronized (LOCK) {
      if (singleDepth++ == 0 && outside > 1) set(1);
    }
    try {
      return body.get();
    } finally {
      synchronized (LOCK) {
        if (--singleDepth == 0 && outside > 1) set(outside);
      }
    }
  }
}
