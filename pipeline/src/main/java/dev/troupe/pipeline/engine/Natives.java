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

/**
 * Loads libtorch (and the OpenBLAS it links) exactly once per JVM, safely.
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
          Loader.load(org.bytedeco.pytorch.global.torch.class);
        }
      } catch (IOException e) {
        throw new UncheckedIOException(
            "cannot extract libtorch into JavaCPP's cache folder: " + e.getMessage(), e);
      }
      loaded = true;
    }
  }
}
