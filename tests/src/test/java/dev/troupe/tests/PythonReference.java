package dev.troupe.tests;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The independent reference: {@code tests/src/test/python/hf_llama_reference.py}, a from-scratch
 * PyTorch implementation of the Hugging Face LLaMA forward, run with Debian's python3-torch.
 */
final class PythonReference {
  /** Debian's python3 (where python3-torch installs); TROUPE_REFERENCE_PYTHON overrides it. */
  static final Path PYTHON =
      Path.of(System.getenv().getOrDefault("TROUPE_REFERENCE_PYTHON", "/usr/bin/python3"));

  static final Path SCRIPT = Path.of("src/test/python/hf_llama_reference.py").toAbsolutePath();
  private static Boolean available;

  private PythonReference() {}

  /** True where /usr/bin/python3 can import torch. */
  static synchronized boolean available() {
    if (available == null) {
      try {
        Process p =
            new ProcessBuilder(PYTHON.toString(), "-c", "import torch")
                .redirectErrorStream(true)
                .start();
        p.getInputStream().readAllBytes();
        available = p.waitFor(120, TimeUnit.SECONDS) && p.exitValue() == 0;
      } catch (IOException | InterruptedException e) {
        available = false;
      }
    }
    return available;
  }

  /** Runs the reference and returns its logits file. */
  static Path score(Path model, Path adapter, String ids, String dtype, Path out) throws Exception {
    List<String> cmd =
        new ArrayList<>(
            List.of(
                PYTHON.toString(),
                SCRIPT.toString(),
                "--model",
                model.toString(),
                "--ids",
                ids,
                "--out",
                out.toString(),
                "--dtype",
                dtype));
    if (adapter != null) cmd.addAll(List.of("--adapter", adapter.toString()));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String output = new String(p.getInputStream().readAllBytes());
    if (!p.waitFor(300, TimeUnit.SECONDS) || p.exitValue() != 0 || !Files.exists(out)) {
      throw new AssertionError("python reference failed: " + output);
    }
    return out;
  }
}
