package dev.troupe.cli;

import java.io.PrintStream;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * The {@code troupe} command. Errors print one line on stderr ({@code troupe: error: ...}) and exit
 * non-zero: 2 for a command line that cannot be run, 1 for a failure while running. A stack trace
 * is printed only with {@code --stacktrace} or {@code TROUPE_STACKTRACE=1}.
 */
public final class Main {
  static final String USAGE =
      """
      usage: troupe <command> [options]

      commands:
        demo       [--out DIR] [--precision fp32|bf16|fp16|int8|nf4] [--steps N]
                                             the main job on embedded defaults: builds (once) a small base
                                             model, fine-tunes it on a new task, shows accuracy before/after
        init-model --preset tiny|bench-s|bench-m --out DIR [--seed N] [--weights-dtype f32|bf16|f16]
                   [--max-shard-mb N]        a randomly initialised model in Hugging Face layout
        score      --model DIR [--adapter DIR] --ids "1,5,9;3,4,5" --out FILE.safetensors
                   [--dtype fp32|bf16|fp16] [--threads N] [--quantize none|int8|int4|nf4]
                                             logits of equal-length id sequences, float32 [seqs, tokens, vocab]
        train      JOB.conf                  fine-tune LoRA adapters as the job file says (see conf/example-job.conf);
                                             resumes from the newest valid checkpoint in its output folder
        eval       --model DIR [--adapter DIR] --data FILE.jsonl [--format alpaca|chat|tokens]
                   [--compare-adapter DIR | --compare-model DIR] [--seq-len N] [--batch N] [--max-new-tokens N]
                   [--chat-template model|default] [--dtype fp32|bf16|fp16] [--quantize none|int8|int4|nf4]
                                             eval loss, perplexity and exact-match accuracy; with a second
                                             adapter or model, both on the same data and their ratio
        bench      [--preset tiny|bench-s|bench-m | --model DIR] [--modes full-fp32,lora-fp32,...]
                   [--seq 256] [--batch 4] [--steps 8] [--warmup 2] [--threads N] [--rounds N]
                   [--peer auto|none|PYTHON] [--models-dir DIR] [--checkpointing] [--json]
                                             each mode in a fresh JVM beside the PyTorch eager peer:
                                             tokens/s, peak memory, speedup and memory vs full-fp32
        bench-pipeline [--preset bench-s | --model DIR] [--seq 256] [--micro 1] [--microbatches 8]
                   [--steps 6] [--warmup 1] [--precision bf16]
                                             pp=2 over two 1-thread devices vs 1x1x1 on one 2-thread
                                             device, alternating; tokens/s and the measured bubble
        merge      --model DIR --adapter DIR --out DIR
                                             the adapter folded into the base weights, Hugging Face layout
        generate   --model DIR [--adapter DIR] (--prompt TEXT | --prompt-ids 1,2,3)
                   [--max-new-tokens N] [--json] [--dtype fp32|bf16|fp16] [--threads N] [--quantize none|int8|int4|nf4]
                                             greedy continuation

        node       [--config FILE] [--host H] [--port N] [--seeds H:P,H:P] [--devices cpu:N|none]
                   [--threads-per-device N] [--roles worker,coordinator] [--data-dir DIR]
                                             a cluster node: joins (or seeds) the cluster, one device actor
                                             per device, the coordinator on coordinator nodes; runs until stopped

        submit     JOB.conf [--follow] [--contact H:P,H:P] [--config FILE]
                                             queues a job on the cluster, prints its id; --follow shows
                                             progress until it ends (exit 1 unless it completed)
        status     [JOB] [--json] [--contact H:P,...] [--config FILE]
                                             the jobs (or one): state, step, loss
        jobs       [--json] [--contact H:P,...] [--config FILE]
                                             every job, in submission order
        pause|resume|cancel JOB [--contact H:P,...] [--config FILE]
                                             controls a job at its next step boundary
        drain      NODE [--contact H:P,...] [--config FILE]
                                             moves the running plan off NODE (host:port) at the
                                             next step boundary; NODE's devices stay unused

      options for every command: --stacktrace (print the stack trace of an error)
      """;

  private static final Map<String, Command> COMMANDS =
      Map.ofEntries(
          Map.entry("init-model", new InitModelCommand()),
          Map.entry("score", new ScoreCommand()),
          Map.entry("generate", new GenerateCommand()),
          Map.entry("train", new TrainCommand()),
          Map.entry("eval", new EvalCommand()),
          Map.entry("merge", new MergeCommand()),
          Map.entry("demo", new DemoCommand()),
          Map.entry("bench", new BenchCommand()),
          Map.entry("bench-run", new BenchRunCommand()),
          Map.entry("bench-pipeline", new BenchPipelineCommand()),
          Map.entry("node", new NodeCommand()),
          Map.entry("submit", new ClientCommand("submit")),
          Map.entry("status", new ClientCommand("status")),
          Map.entry("jobs", new ClientCommand("jobs")),
          Map.entry("pause", new ClientCommand("pause")),
          Map.entry("resume", new ClientCommand("resume")),
          Map.entry("cancel", new ClientCommand("cancel")),
          Map.entry("drain", new ClientCommand("drain")));

  private Main() {}

  public static void main(String[] args) {
    System.exit(run(args, System.out, System.err));
  }

  /** Runs one command and returns its exit status; never calls System.exit. */
  public static int run(String[] args, PrintStream out, PrintStream err) {
    List<String> rest = Arrays.stream(args).filter(a -> !a.equals("--stacktrace")).toList();
    boolean trace = rest.size() != args.length || "1".equals(System.getenv("TROUPE_STACKTRACE"));
    if (rest.isEmpty()
        || rest.get(0).equals("help")
        || rest.get(0).equals("--help")
        || rest.get(0).equals("-h")) {
      out.print(USAGE);
      return rest.isEmpty() ? 2 : 0;
    }
    Command command = COMMANDS.get(rest.get(0));
    if (command == null) {
      err.println("troupe: error: unknown command '" + rest.get(0) + "' (try 'troupe help')");
      return 2;
    }
    try {
      return command.run(rest.subList(1, rest.size()), out);
    } catch (UsageException e) {
      err.println("troupe: error: " + e.getMessage());
      if (trace) e.printStackTrace(err);
      return 2;
    } catch (Exception | LinkageError e) {
      err.println("troupe: error: " + describe(e));
      if (trace) e.printStackTrace(err);
      return 1;
    }
  }

  /** One line for an exception: its message, or its type where it has none. */
  static String describe(Throwable e) {
    // a failure in a class's static initializer (loading libtorch) carries the reason as its cause
    if (e instanceof ExceptionInInitializerError && e.getCause() != null) e = e.getCause();
    String m = e.getMessage();
    if (m == null || m.isBlank()) return e.getClass().getSimpleName();
    // libtorch's messages carry a C++ backtrace after the first line
    int nl = m.indexOf('\n');
    return nl < 0 ? m : m.substring(0, nl);
  }

  /** A subcommand. */
  interface Command {
    int run(List<String> args, PrintStream out) throws Exception;
  }
}
