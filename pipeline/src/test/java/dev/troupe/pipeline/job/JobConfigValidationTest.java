package dev.troupe.pipeline.job;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Path;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Every rejected job file gives "job.conf: key: what"; one case per line. */
class JobConfigValidationTest {
  static final String REQUIRED = "model = m, data.train = t.jsonl, output = out\n";

  static String error(String hocon) {
    return assertThrows(JobConfigException.class, () -> JobConfig.parse(hocon, Path.of("job.conf")))
        .getMessage();
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(
      delimiter = '|',
      textBlock =
          """
          model = null                                | model: required
          data.train = null                           | data.train: required
          output = null                               | output: required
          model = ""                                  | model: must be a non-empty path, got ""
          output = 5                                  | output: must be a path (a string), got 5
          data.eval = [a]                             | data.eval: must be a path (a string), got ["a"]
          lora.init = {a = 1}                         | lora.init: must be a path (a string), got {"a":1}
          data.format = xml                           | data.format: must be one of alpaca, chat, tokens, got "xml"
          data.shuffle = maybe                        | data.shuffle: must be true or false, got "maybe"
          data.skip-malformed = 1                     | data.skip-malformed: must be true or false, got 1
          lora.r = 0                                  | lora.r: must be a positive integer, got 0
          lora.r = 1.5                                | lora.r: must be a positive integer, got 1.5
          lora.alpha = 0                              | lora.alpha: must be a positive number, got 0
          lora.alpha = "x"                            | lora.alpha: must be a positive number, got "x"
          lora.dropout = 1                            | lora.dropout: must be a number in [0, 1), got 1
          lora.dropout = -0.1                         | lora.dropout: must be a number in [0, 1), got -0.1
          lora.targets = []                           | lora.targets: must name at least one module, got []
          lora.targets = q_proj                       | lora.targets: must be a list of module names, got "q_proj"
          lora.targets = [1]                          | lora.targets: must be a list of module names, got [1]
          lora.targets = [q_proj, wq]                 | lora.targets: unknown module "wq" (known: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)
          lora.targets = [q_proj, v_proj, Q_PROJ]     | lora.targets: lists "q_proj" twice
          optimizer.lr = 0                            | optimizer.lr: must be a positive number, got 0
          optimizer.lr = fast                         | optimizer.lr: must be a positive number, got "fast"
          optimizer.betas = [0.9]                     | optimizer.betas: must be a list of two numbers in [0, 1), got [0.9]
          optimizer.betas = [0.9, 1.0]                | optimizer.betas: must be a list of two numbers in [0, 1), got [0.9,1]
          optimizer.betas = [0.9, 0.99, 0.999]        | optimizer.betas: must be a list of two numbers in [0, 1), got [0.9,0.99,0.999]
          optimizer.betas = 0.9                       | optimizer.betas: must be a list of two numbers in [0, 1), got 0.9
          optimizer.eps = 0                           | optimizer.eps: must be a positive number, got 0
          optimizer.weight-decay = -0.1               | optimizer.weight-decay: must be a non-negative number, got -0.1
          optimizer.schedule = exponential            | optimizer.schedule: must be one of constant, linear, cosine, got "exponential"
          optimizer.warmup-steps = -1                 | optimizer.warmup-steps: must be a non-negative integer, got -1
          optimizer.max-grad-norm = -1                | optimizer.max-grad-norm: must be a non-negative number, got -1
          batch.global = sixteen                      | batch.global: must be a positive integer, got "sixteen"
          batch.global = 0                            | batch.global: must be a positive integer, got 0
          batch.global = 99999999999                  | batch.global: must be a positive integer up to 2147483647, got 99999999999
          batch.micro = 0                             | batch.micro: must be a positive integer, got 0
          batch.micro = 5                             | batch.global: must be a multiple of batch.micro (5), got 16
          batch.seq-len = 1                           | batch.seq-len: must be an integer >= 2, got 1
          steps = 0                                   | steps: must be a positive integer, got 0
          steps = null                                | steps: required (or give epochs)
          epochs = 0                                  | epochs: must be a positive integer, got 0
          steps = 10, epochs = 2                      | epochs: cannot be given together with steps (give one of the two)
          steps = 1000, epochs = 2                    | epochs: cannot be given together with steps (give one of the two)
          precision.mode = fp8                        | precision.mode: must be one of fp32, bf16, fp16, got "fp8"
          quantization.base = int3                    | quantization.base: must be one of none, int8, int4, nf4, got "int3"
          quantization.demote-below = 0.5             | quantization.demote-below: must be a number >= 0 below quantization.promote-above (0.05), got 0.5
          quantization.check-every = -1               | quantization.check-every: must be a non-negative integer, got -1
          precision.fp32-warmup-steps = -1            | precision.fp32-warmup-steps: must be a non-negative integer, got -1
          gradient-checkpointing = 1                  | gradient-checkpointing: must be true or false, got 1
          checkpoint.every = 0                        | checkpoint.every: must be a positive integer, got 0
          checkpoint.keep = 0                         | checkpoint.keep: must be a positive integer, got 0
          eval.every = 0                              | eval.every: must be a positive integer, got 0
          eval.max-new-tokens = 0                     | eval.max-new-tokens: must be a positive integer, got 0
          seed = 1.5                                  | seed: must be an integer, got 1.5
          threads = -1                                | threads: must be a non-negative integer, got -1
          parallel = manual                           | parallel: must be auto or an object with keys dp, pp, tp, got "manual"
          parallel = 2                                | parallel: must be auto or an object with keys dp, pp, tp, got 2
          parallel = null                             | parallel: must be auto or an object with keys dp, pp, tp, got null
          parallel = [2, 1, 1]                        | parallel: must be auto or an object with keys dp, pp, tp, got [2,1,1]
          parallel { pp = 0 }                         | parallel.pp: must be a positive integer, got 0
          parallel { pp = 2, tp = -1 }                | parallel.tp: must be a positive integer, got -1
          parallel.dp = 1.5                           | parallel.dp: must be a positive integer, got 1.5
          parallel { pp = 2, ep = 2 }                 | parallel.ep: unknown key (known: dp, pp, tp)
          """)
  void invalidValue(String snippet, String expected) {
    assertEquals("job.conf: " + expected, error(REQUIRED + snippet));
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(
      delimiter = '|',
      textBlock =
          """
          learning-rate = 1                           | learning-rate: unknown key (known: batch, checkpoint, data, elastic, epochs, eval, gradient-checkpointing, lora, model, optimizer, output, parallel, precision, quantization, seed, steps, threads)
          Model = m                                   | Model: unknown key (known: batch, checkpoint, data, elastic, epochs, eval, gradient-checkpointing, lora, model, optimizer, output, parallel, precision, quantization, seed, steps, threads)
          troupe.job.seed = 1                         | troupe: unknown key (known: batch, checkpoint, data, elastic, epochs, eval, gradient-checkpointing, lora, model, optimizer, output, parallel, precision, quantization, seed, steps, threads)
          "lora.r" = 8                                | "lora.r": unknown key (known: batch, checkpoint, data, elastic, epochs, eval, gradient-checkpointing, lora, model, optimizer, output, parallel, precision, quantization, seed, steps, threads)
          optimizer.learning-rate = 1                 | optimizer.learning-rate: unknown key (known: betas, eps, lr, max-grad-norm, schedule, warmup-steps, weight-decay)
          optimizer { lr = 1e-4, learning-rate = 1 }  | optimizer.learning-rate: unknown key (known: betas, eps, lr, max-grad-norm, schedule, warmup-steps, weight-decay)
          batch.size = 8                              | batch.size: unknown key (known: global, micro, seq-len)
          lora { rank = 8, r = 4 }                    | lora.rank: unknown key (known: alpha, dropout, init, r, targets)
          data { extra { a = 1 } }                    | data.extra: unknown key (known: chat-template, eval, format, shuffle, skip-malformed, train)
          precision.mode.bits = 16                    | precision.mode: must be one of fp32, bf16, fp16, got {"bits":16}
          data = null                                 | data: must be an object with keys chat-template, eval, format, shuffle, skip-malformed, train, got null
          lora = 5                                    | lora: must be an object with keys alpha, dropout, init, r, targets, got 5
          """)
  void unknownOrMisplacedKey(String snippet, String expected) {
    assertEquals("job.conf: " + expected, error(REQUIRED + snippet));
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(
      delimiter = '|',
      quoteCharacter = '`',
      textBlock =
          """
          seed = 1                                    | job.conf: model: required
          data.train = t, output = o                  | job.conf: model: required
          model = m, output = o                       | job.conf: data.train: required
          model = m, data.train = t                   | job.conf: output: required
          model = m\\nbatch {\\n global = 4\\n        | job.conf: line 4: expecting a close parentheses ')' here, not: end of file
          model = m\\noutput = ${nope}                | job.conf: line 2: Could not resolve substitution to a value: ${nope}
          model = [m,                                 | job.conf: line 1: List should have had new element after a comma, instead had token: end of file (if you want the comma or end of file to be part of a string value, then double-quote it)
          """)
  void wholeFileError(String hocon, String expected) {
    assertEquals(expected, error(hocon.replace("\\n", "\n")));
  }
}
