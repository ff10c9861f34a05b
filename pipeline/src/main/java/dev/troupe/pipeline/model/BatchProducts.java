package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;

/**
 * The attention's FP32 batched products ({@code bmm}, {@code baddbmm}), their batch split over
 * threads where OpenBLAS runs on the calling thread alone.
 *
 * <p>In bf16 compute OpenBLAS is held to one thread ({@link Torch#sizeBlasThreads}: its spinning
 * workers took the other cores from the bf16 work). libtorch's CPU {@code bmm} for matrices of the
 * attention's size loops over the batch, one BLAS call per matrix, so the attention's FP32 products
 * ran on one core and the others idled: about a quarter of a bench-m lora-bf16 step. Here the batch
 * is cut into one part per intra-op thread; the caller computes the first part and helper threads
 * the others, each into its own slice of one output, so the result is the same tensor, bit for bit,
 * that one call makes (each matrix is one BLAS call either way). Measured on the 2-core machine,
 * FP32 {@code [64, 256, 64] x [64, 64, 256]}: 7.7 ms on one thread, 4.4 ms split in two.
 *
 * <p>Where OpenBLAS has threads of its own, on CUDA, for other dtypes, for a batch of one, or with
 * one intra-op thread, a product is the plain libtorch call.
 */
final class BatchProducts {
  private BatchProducts() {}

  private static final AtomicInteger THREAD_NUMBER = new AtomicInteger();

  /** Helpers for the parts after the first, made on first use; daemon threads. */
  private static final class Pool {
    static final ExecutorService HELPERS =
        Executors.newFixedThreadPool(
            Math.max(1, torch.get_num_threads() - 1),
            r -> {
              Thread t = new Thread(r, "troupe-batch-products-" + THREAD_NUMBER.incrementAndGet());
              t.setDaemon(true);
              return t;
            });
  }

  /** {@code a @ b} for FP32 [n, i, k] and [n, k, j]. */
  static Tensor bmm(Tensor a, Tensor b) {
    int parts = parts(a, b);
    if (parts <= 1) return torch.bmm(a, b);
    Tensor out = output(a, b);
    split(
        parts,
        a.size(0),
        (start, len) ->
            torch.bmm_out(slice(out, start, len), slice(a, start, len), slice(b, start, len)));
    return out;
  }

  /** {@code bias + alpha * (a @ b)}, {@code bias} broadcast over the batch. */
  static Tensor baddbmm(Tensor bias, Tensor a, Tensor b, double alpha) {
    int parts = parts(a, b);
    if (parts <= 1) {
      return torch.baddbmm(bias, a, b, new Scalar(1.0), new Scalar(alpha));
    }
    Tensor out = output(a, b);
    split(
        parts,
        a.size(0),
        (start, len) ->
            torch.baddbmm_out(
                slice(out, start, len),
                bias,
                slice(a, start, len),
                slice(b, start, len),
                new Scalar(1.0),
                new Scalar(alpha)));
    return out;
  }

  /**
   * How many parts the batch of {@code a} is cut into: 1 where splitting does not pay, and under
   * autograd (the parts write into one output, which autograd cannot follow).
   */
  static int parts(Tensor a, Tensor b) {
    if (Torch.blasThreads() != 1 || a.is_cuda()) return 1;
    if (a.scalar_type().value != torch.ScalarType.Float.value) return 1;
    if (GradMode.is_enabled() && (a.requires_grad() || b.requires_grad())) return 1;
    return (int) Math.min(a.size(0), torch.get_num_threads());
  }

  private static Tensor output(Tensor a, Tensor b) {
    return torch.empty(
        new long[] {a.size(0), a.size(1), b.size(2)},
        new TensorOptions(torch.ScalarType.Float),
        new MemoryFormatOptional());
  }

  private static Tensor slice(Tensor x, long start, long len) {
    return x.narrow(0, start, len);
  }

  private interface Part {
    void compute(long start, long len);
  }

  /**
   * Runs {@code part} on {@code parts} contiguous ranges of {@code n}: the first on this thread,
   * the others on helpers; returns when all are done, rethrowing the first failure.
   */
  private static void split(int parts, long n, Part part) {
    List<Future<?>> others = new ArrayList<>(parts - 1);
    long[] starts = new long[parts + 1];
    for (int i = 0; i <= parts; i++) starts[i] = n * i / parts;
    for (int i = 1; i < parts; i++) {
      long start = starts[i];
      long len = starts[i + 1] - start;
      others.add(
          Pool.HELPERS.submit(
              () -> {
                try (PointerScope scope = new PointerScope();
                    NoGradGuard noGrad = new NoGradGuard()) {
                  part.compute(start, len);
                }
              }));
    }
    RuntimeException failure = null;
    try (PointerScope scope = new PointerScope()) {
      part.compute(0, starts[1]);
    } catch (RuntimeException e) {
      failure = e;
    }
    for (Future<?> f : others) {
      try {
        f.get();
      } catch (ExecutionException e) {
        if (failure == null) {
          failure =
              e.getCause() instanceof RuntimeException r
                  ? r
                  : new IllegalStateException(e.getCause());
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        if (failure == null) failure = new IllegalStateException("interrupted", e);
      }
    }
    if (failure != null) throw failure;
  }
}
