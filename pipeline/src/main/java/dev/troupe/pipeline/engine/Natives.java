package dev.troupe.pipeline.engine;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.openblas.presets.openblas_nolapack.SetNumThreads;

/**
 * Loads libtorch (and the OpenBLAS it links: the bundled one, or the system's where {@link
 * BlasLibrary} chooses it) exactly once per JVM, safely.
 *
 * <p>JavaCPP extracts its native libraries into a cache folder shared by every JVM of the user and
 * then {@code System.load}s them. Two things go wrong on a cold cache (measured: 2 of 4 JVMs
 * started at once died with SIGBUS inside the dynamic linker):
 *
 * <ul>
 *   <li>several JVMs extract the same 330 MB {@code libtorch_cpu.so} at once, and one of them maps
 *       a file another is still writing;
 *   <li>a library loaded before its dependencies are extracted lets the dynamic linker fall back to
 *       the system search path, where Debian's {@code python3-torch} may provide another libtorch.
 * </ul>
 *
 * The cure is done here at the root: under an exclusive inter-process file lock in the cache
 * folder, first extract every native resource of the OpenBLAS and PyTorch presets, then load them,
 * then release the lock. A JVM that comes second waits, finds the files complete and loads them.
 * Call {@link #ensureLoaded()} before touching any {@code org.bytedeco.pytorch} class; the engine's
 * entry points ({@link Torch}) do.
 */
public final class Natives {
  private static volatile boolean loaded;

  private Natives() {}

  /** Extracts and loads the natives once; later calls return at once. */
  public static void ensureLoaded() {
    if (loaded) return;
    synchronized (Natives.class) {
      if (loaded) return;
      // JavaCPP's own memory limits (maxBytes = -Xmx, maxPhysicalBytes = 4 x -Xmx by default)
      // count every native byte of the process, libtorch's included: near them it forces GCs and
      // then throws OutOfMemoryError, though Troupe frees tensors through scopes and owners, not
      // the GC. Measured: a 16-layer LoRA step died at 1 GiB resident with -Xmx256m. Off unless
      // set explicitly.
      for (String limit :
          new String[] {"org.bytedeco.javacpp.maxBytes", "org.bytedeco.javacpp.maxPhysicalBytes"}) {
        if (System.getProperty(limit) == null) System.setProperty(limit, "0");
      }
      try {
        File cache = Loader.getCacheDir();
        Files.createDirectories(cache.toPath());
        Path lockFile = cache.toPath().resolve(".troupe-natives.lock");
        try (FileChannel ch =
                FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
            FileLock ignored = ch.lock()) {
          Loader.cacheResources(
              Loader.class, "/org/bytedeco/javacpp/" + Loader.getPlatform() + "/");
          Loader.cacheResources(
              org.bytedeco.openblas.global.openblas.class,
              "/org/bytedeco/openblas/" + Loader.getPlatform() + "/");
          Loader.cacheResources(
              org.bytedeco.pytorch.global.torch.class,
              "/org/bytedeco/pytorch/" + Loader.getPlatform() + "/");
          BlasLibrary.loadChosen();
          Loader.load(org.bytedeco.pytorch.global.torch.class);
        }
        shortenOpenBlasSpin();
      } catch (IOException e) {
        throw new UncheckedIOException(
            "cannot extract libtorch into JavaCPP's cache folder: " + e.getMessage(), e);
      }
      loaded = true;
    }
  }

  /**
   * The exponent Troupe gives {@code OPENBLAS_THREAD_TIMEOUT} where the environment sets none: an
   * idle OpenBLAS worker spins for 2^16 CPU cycles (tens of microseconds) before it sleeps, where
   * OpenBLAS's default, 2^28, is about a tenth of a second. The bench gives its PyTorch peer the
   * same.
   */
  public static final int OPENBLAS_THREAD_TIMEOUT = 16;

  /**
   * Makes OpenBLAS's idle workers sleep after {@link #OPENBLAS_THREAD_TIMEOUT} unless the user set
   * {@code OPENBLAS_THREAD_TIMEOUT} (or {@code GOTO_THREAD_TIMEOUT}) already.
   *
   * <p>Why: JavaCPP's OpenBLAS (0.3.31, pthreads) keeps each worker spinning, without yielding, for
   * 2^28 cycles after every product. Between the products of an FP32 step (the layers' elementwise
   * work, norms, attention) that worker held one of a 2-core machine's cores against the main
   * thread and libtorch's OpenMP worker: perf put 23% of bench-m lora-fp32's samples in its spin
   * loop. With 2^16 the worker sleeps at once and a product wakes it again: bench-m lora-fp32 222
   * against 299 tokens/s, full-fp32 187 against 202.
   *
   * <p>How: OpenBLAS reads its environment when it is loaded, which happens before any Java code
   * can set a variable (Java cannot change its own environment). So the variable is set through
   * libtorch's {@code c10::utils::set_env}, OpenBLAS reads its environment again ({@code
   * openblas_read_env}), and its worker threads are stopped and started again ({@code
   * blas_thread_shutdown_}, {@code blas_thread_init}), which is where the timeout is applied. This
   * runs once, right after loading, before any product. Where a symbol is missing (another BLAS),
   * nothing is changed.
   */
  private static void shortenOpenBlasSpin() {
    if (System.getenv("OPENBLAS_THREAD_TIMEOUT") != null
        || System.getenv("GOTO_THREAD_TIMEOUT") != null) {
      return;
    }
    Pointer readEnv = Loader.addressof("openblas_read_env");
    Pointer shutdown = Loader.addressof("blas_thread_shutdown_");
    Pointer init = Loader.addressof("blas_thread_init");
    for (Pointer p : new Pointer[] {readEnv, shutdown, init}) {
      if (p == null || p.isNull()) return;
    }
    org.bytedeco.pytorch.global.torch.set_env(
        "OPENBLAS_THREAD_TIMEOUT", Integer.toString(OPENBLAS_THREAD_TIMEOUT), false);
    callNoArguments(readEnv);
    callNoArguments(shutdown);
    callNoArguments(init);
  }

  /**
   * Calls a C function of no arguments whose result, if any, is not needed, through the OpenBLAS
   * presets' {@code void(int)} function pointer: the x86-64 and AArch64 calling conventions pass
   * the argument in a register that such a function never reads.
   */
  private static void callNoArguments(Pointer function) {
    new SetNumThreads() {}.put(function).call(0);
  }
}
