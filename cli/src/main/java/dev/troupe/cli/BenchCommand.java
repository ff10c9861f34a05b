package dev.troupe.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.pipeline.bench.BenchMode;
import dev.troupe.pipeline.engine.Natives;
import dev.troupe.pipeline.model.ModelPreset;
import dev.troupe.pipeline.model.RandomInit;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

/**
 * {@code troupe bench}: runs each configuration in a fresh JVM ({@code troupe bench-run}) and,
 * where Debian's python3 with torch is there, the PyTorch eager peer ({@code
 * bench/pytorch_peer.py}) right after it on the same model, settings and threads; repeats that
 * {@code --rounds} times and prints medians: tokens/s, peak resident memory, speedup and memory
 * reduction against {@code full-fp32}, eval-loss delta, and Troupe's tokens/s over the peer's.
 */
final class BenchCommand implements Main.Command {
  private static final ObjectMapper JSON = new ObjectMapper();

  /**
   * libgomp's spins before an idle OpenMP thread sleeps, with {@code OMP_WAIT_POLICY=ACTIVE}: what
   * bin/troupe sets where the user set no policy, and what the bench gives both implementations.
   */
  static final int OMP_SPIN_COUNT = 30000;

  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    Args args =
        Args.parse(
            "bench",
            argv,
            Set.of(
                "preset",
                "model",
                "modes",
                "seq",
                "batch",
                "steps",
                "warmup",
                "threads",
                "rounds",
                "peer",
                "models-dir"),
            Set.of("json", "checkpointing"));
    List<BenchMode> modes = new ArrayList<>();
    String modeList =
        args.get(
            "modes",
            String.join(",", Arrays.stream(BenchMode.values()).map(BenchMode::label).toList()));
    for (String m : modeList.split(",")) {
      try {
        modes.add(BenchMode.parse(m.strip()));
      } catch (IllegalArgumentException e) {
        throw new UsageException("bench: --modes: " + e.getMessage());
      }
    }
    int threads = args.intValue("threads", Runtime.getRuntime().availableProcessors(), 1);
    List<String> common =
        List.of(
            "--seq", String.valueOf(args.intValue("seq", 256, 2)),
            "--batch", String.valueOf(args.intValue("batch", 4, 1)),
            "--steps", String.valueOf(args.intValue("steps", 8, 1)),
            "--warmup", String.valueOf(args.intValue("warmup", 2, 0)),
            "--threads", String.valueOf(threads));
    int rounds = args.intValue("rounds", 1, 1);
    Path model = args.has("model") ? args.path("model") : presetModel(args, out);
    List<String> peer = peerCommand(args.get("peer", "auto"), out);
    boolean json = args.has("json");

    Map<String, List<JsonNode>> results = new LinkedHashMap<>();
    for (int round = 1; round <= rounds; round++) {
      for (BenchMode mode : modes) {
        List<String> troupe = new ArrayList<>(javaCommand());
        troupe.addAll(List.of("bench-run", "--model", model.toString(), "--mode", mode.label()));
        troupe.addAll(common);
        if (args.has("checkpointing")) troupe.add("--checkpointing");
        record(results, "troupe", mode, run(troupe, threads, out, json, round, rounds));
        if (peer != null) {
          List<String> p = new ArrayList<>(peer);
          p.addAll(List.of("--model", model.toString(), "--mode", mode.label()));
          p.addAll(common);
          record(results, "pytorch", mode, run(p, threads, out, json, round, rounds));
        }
      }
    }
    if (!json) table(out, modes, results, peer != null, model, common, rounds);
    return 0;
  }

  private static void record(
      Map<String, List<JsonNode>> results, String impl, BenchMode mode, JsonNode r) {
    results.computeIfAbsent(impl + " " + mode.label(), k -> new ArrayList<>()).add(r);
  }

  /** The preset's model under {@code --models-dir}, made once (seed 0). */
  static Path presetModel(Args args, PrintStream out) throws IOException {
    ModelPreset preset;
    try {
      preset = ModelPreset.parse(args.get("preset", "bench-s"));
    } catch (IllegalArgumentException e) {
      throw new UsageException("bench: --preset: " + e.getMessage());
    }
    Path dir = Path.of(args.get("models-dir", "runs/bench/models")).resolve(preset.label());
    if (Files.isRegularFile(dir.resolve("config.json"))) return dir;
    out.println("making the " + preset.label() + " model once in " + dir + " ...");
    Path tmp = dir.resolveSibling(preset.label() + ".tmp");
    deleteTree(tmp);
    new RandomInit(preset.config()).preset(preset.label()).seed(0).write(tmp);
    Files.move(tmp, dir, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    return dir;
  }

  private static void deleteTree(Path p) throws IOException {
    if (!Files.exists(p)) return;
    try (var walk = Files.walk(p)) {
      for (Path q : walk.sorted(java.util.Comparator.reverseOrder()).toList()) Files.delete(q);
    }
  }

  /** This JVM's java, options and classpath, running Main. */
  private static List<String> javaCommand() {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if (!a.startsWith("-agentlib") && !a.startsWith("-javaagent")) cmd.add(a);
    }
    cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
    return cmd;
  }

  /** The peer's command, or null where there is none (and why, printed). */
  private static List<String> peerCommand(String choice, PrintStream out)
      throws IOException, InterruptedException {
    if (choice.equals("none")) return null;
    Path script = peerScript();
    String python = choice.equals("auto") ? "/usr/bin/python3" : choice;
    if (script == null) {
      if (!choice.equals("auto"))
        throw new UsageException("bench: bench/pytorch_peer.py not found");
      out.println("note: bench/pytorch_peer.py not found; running without the PyTorch peer");
      return null;
    }
    Process p =
        new ProcessBuilder(python, "-c", "import torch")
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .start();
    if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) {
      if (!choice.equals("auto")) {
        throw new UsageException("bench: --peer " + python + " cannot import torch");
      }
      out.println(
          "note: "
              + python
              + " cannot import torch (apt install python3-torch"
              + " libopenblas0-pthread); running without the PyTorch peer");
      return null;
    }
    return List.of(python, script.toString());
  }

  private static Path peerScript() {
    String home = System.getProperty("troupe.home");
    for (Path base : home == null ? List.of(Path.of("")) : List.of(Path.of(home), Path.of(""))) {
      Path p = base.resolve("bench/pytorch_peer.py").toAbsolutePath();
      if (Files.isRegularFile(p)) return p;
    }
    return null;
  }

  /** Runs one configuration; its stdout's last line is its JSON result. */
  private static JsonNode run(
      List<String> cmd, int threads, PrintStream out, boolean json, int round, int rounds)
      throws IOException, InterruptedException {
    ProcessBuilder pb = new ProcessBuilder(cmd);
    // libtorch's OpenMP wait as bin/troupe sets it, for both implementations alike; the bench's
    // own setting where it has one (a user's)
    String policy = System.getenv("OMP_WAIT_POLICY");
    if (policy == null || policy.isEmpty()) {
      pb.environment().put("OMP_WAIT_POLICY", "ACTIVE");
      pb.environment().putIfAbsent("GOMP_SPINCOUNT", String.valueOf(OMP_SPIN_COUNT));
    }
    pb.environment().put("OMP_NUM_THREADS", String.valueOf(threads));
    pb.environment().put("OPENBLAS_NUM_THREADS", String.valueOf(threads));
    // Troupe's JVMs shorten OpenBLAS's idle spin themselves (Natives); the peer's OpenBLAS gets
    // the same setting, which speeds it up too (bench-m lora-fp32: 325-328 against 337-372).
    if (System.getenv("GOTO_THREAD_TIMEOUT") == null) {
      pb.environment()
          .putIfAbsent("OPENBLAS_THREAD_TIMEOUT", String.valueOf(Natives.OPENBLAS_THREAD_TIMEOUT));
    }
    Path log = Files.createTempFile("troupe-bench", ".log");
    pb.redirectError(log.toFile());
    Process p = pb.start();
    String stdout = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    int status = p.waitFor();
    String err = Files.readString(log);
    Files.deleteIfExists(log);
    String[] lines = stdout.strip().split("\n");
    JsonNode r = null;
    try {
      r = status == 0 ? JSON.readTree(lines[lines.length - 1]) : null;
    } catch (IOException e) {
      r = null;
    }
    if (r == null || !r.has("tokens_per_s")) {
      throw new IOException(
          "bench: '"
              + String.join(" ", cmd.subList(Math.max(0, cmd.size() - 14), cmd.size()))
              + "' failed (status "
              + status
              + "):\n"
              + tail(err + stdout, 2000));
    }
    if (json) {
      out.println(JSON.writeValueAsString(r));
    } else {
      out.printf(
          Locale.ROOT,
          "%s%-10s %-8s %9.0f tokens/s  peak %7.0f MiB  eval loss %.4f%n",
          rounds > 1 ? "round " + round + ": " : "",
          r.get("mode").asText(),
          r.get("impl").asText(),
          r.get("tokens_per_s").asDouble(),
          r.get("peak_rss_mib").asDouble(),
          r.get("eval_loss").asDouble());
    }
    return r;
  }

  private static String tail(String s, int n) {
    return s.length() <= n ? s : "..." + s.substring(s.length() - n);
  }

  private static double median(List<JsonNode> rs, String field) {
    double[] v = rs.stream().mapToDouble(r -> r.get(field).asDouble()).sorted().toArray();
    int n = v.length;
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  }

  /**
   * What the runs reported in one field, per implementation, e.g. the allocators: "troupe
   * libtcmalloc_minimal.so.4, pytorch libtcmalloc_minimal.so.4". Both run under bin/troupe's
   * LD_PRELOAD, so they match unless a peer is given that replaces it.
   */
  private static String reported(Map<String, List<JsonNode>> results, String field) {
    Map<String, Set<String>> byImpl = new LinkedHashMap<>();
    for (List<JsonNode> rs : results.values()) {
      for (JsonNode r : rs) {
        byImpl
            .computeIfAbsent(r.get("impl").asText(), k -> new TreeSet<>())
            .add(r.has(field) ? r.get(field).asText() : "not reported");
      }
    }
    List<String> parts = new ArrayList<>();
    byImpl.forEach((impl, names) -> parts.add(impl + " " + String.join("/", names)));
    return String.join(", ", parts);
  }

  private static void table(
      PrintStream out,
      List<BenchMode> modes,
      Map<String, List<JsonNode>> results,
      boolean peer,
      Path model,
      List<String> common,
      int rounds) {
    List<JsonNode> base = results.get("troupe full-fp32");
    out.println();
    out.println(
        "model "
            + model
            + ", "
            + String.join(" ", common)
            + ", medians of "
            + rounds
            + " round(s)");
    out.println("native allocator: " + reported(results, "allocator"));
    out.println("OpenMP wait (OMP_WAIT_POLICY/GOMP_SPINCOUNT): " + reported(results, "omp_wait"));
    out.println(
        "OpenBLAS idle workers spin 2^N cycles, N: "
            + reported(results, "openblas_thread_timeout")
            + " (0: OpenBLAS's default, 28)");
    out.println("BLAS (the library of sgemm_): " + reported(results, "blas"));
    out.println("FP32 products (TROUPE_FP32_PRODUCTS): " + reported(results, "fp32_products"));
    out.printf(
        "%-10s %10s %9s %8s %9s %10s%s%n",
        "mode",
        "tokens/s",
        "peak MiB",
        "speedup",
        "mem. red.",
        "eval Δ",
        peer ? String.format("  %12s %9s %9s", "pytorch t/s", "peak MiB", "vs torch") : "");
    for (BenchMode m : modes) {
      List<JsonNode> rs = results.get("troupe " + m.label());
      double tps = median(rs, "tokens_per_s");
      double mem = median(rs, "peak_rss_mib");
      String speedup = "-";
      String reduction = "-";
      String delta = "-";
      if (base != null) {
        speedup = String.format(Locale.ROOT, "%.2fx", tps / median(base, "tokens_per_s"));
        reduction =
            String.format(Locale.ROOT, "%.0f%%", 100 * (1 - mem / median(base, "peak_rss_mib")));
        delta =
            String.format(
                Locale.ROOT, "%+.4f", median(rs, "eval_loss") - median(base, "eval_loss"));
      }
      String p = "";
      if (peer) {
        List<JsonNode> ps = results.get("pytorch " + m.label());
        double ptps = median(ps, "tokens_per_s");
        p =
            String.format(
                Locale.ROOT, "  %12.0f %9.0f %8.2fx", ptps, median(ps, "peak_rss_mib"), tps / ptps);
      }
      out.printf(
          Locale.ROOT,
          "%-10s %10.0f %9.0f %8s %9s %10s%s%n",
          m.label(),
          tps,
          mem,
          speedup,
          reduction,
          delta,
          p);
    }
  }
}
