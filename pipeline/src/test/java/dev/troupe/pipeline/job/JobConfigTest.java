package dev.troupe.pipeline.job;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.data.Format;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class JobConfigTest {
  static final Path FILE = Path.of("job.conf");
  static final String REQUIRED = "model = m, data.train = t.jsonl, output = out\n";

  @TempDir Path dir;

  static JobConfig parse(String hocon) throws JobConfigException {
    return JobConfig.parse(hocon, FILE);
  }

  @Test
  void defaults() throws Exception {
    JobConfig c = parse(REQUIRED);
    assertEquals(FILE, c.file());
    assertEquals(Path.of("m"), c.model());
    assertEquals(new DataSettings(Path.of("t.jsonl"), null, Format.ALPACA, true, false), c.data());
    assertEquals(new LoraSettings(16, 32, 0.1, List.of("q_proj", "v_proj"), null), c.lora());
    assertEquals(
        new OptimizerSettings(2e-4, 0.9, 0.999, 1e-8, 0.0, Schedule.CONSTANT, 0, 1.0),
        c.optimizer());
    assertEquals(new BatchSettings(16, 4, 512), c.batch());
    assertEquals(4, c.batch().accumulationSteps());
    assertEquals(1000, c.steps());
    assertEquals(-1, c.epochs());
    assertEquals(new PrecisionSettings("fp32", 500, 65536), c.precision());
    assertFalse(c.gradientCheckpointing());
    assertEquals(new CheckpointSettings(200, 3), c.checkpoint());
    assertEquals(new EvalSettings(200, 64), c.eval());
    assertEquals(Path.of("out"), c.output());
    assertEquals(42, c.seed());
    assertEquals(0, c.threads());
    assertEquals(ParallelSettings.AUTO, c.parallel());
  }

  @Test
  void fp32WarmUpStepsRunInFp32ThenTheMode() {
    PrecisionSettings p = new PrecisionSettings("bf16", 3, 65536);
    assertEquals("fp32", p.modeAt(0));
    assertEquals("fp32", p.modeAt(2));
    assertEquals("bf16", p.modeAt(3));
    assertEquals("bf16", p.modeAt(1000));
    assertEquals("fp16", new PrecisionSettings("fp16", 0, 65536).modeAt(0));
  }

  @Test
  void elasticDefaultsAndLimits() throws Exception {
    assertEquals(ElasticSettings.DEFAULT, parse(REQUIRED).elastic());
    assertEquals(
        new ElasticSettings(2, 4, 0, 0.5),
        parse(
                REQUIRED
                    + "elastic { min-devices = 2, max-devices = 4, cooldown-seconds = 0,"
                    + " min-gain = 0.5 }")
            .elastic());
    JobConfigException e =
        assertThrows(
            JobConfigException.class,
            () -> parse(REQUIRED + "elastic { min-devices = 3, max-devices = 2 }"));
    assertTrue(e.getMessage().contains("elastic.max-devices"), e.getMessage());
    e = assertThrows(JobConfigException.class, () -> parse(REQUIRED + "elastic.min-gain = 1.5"));
    assertTrue(e.getMessage().contains("elastic.min-gain"), e.getMessage());
  }

  @Test
  void parallelIsAutoOrAnObjectWhoseMissingKeysAreOne() throws Exception {
    assertEquals(ParallelSettings.AUTO, parse(REQUIRED + "parallel = AUTO").parallel());
    assertEquals(
        ParallelSettings.fixed(2, 4, 3),
        parse(REQUIRED + "parallel { pp = 2, tp = 4, dp = 3 }").parallel());
    assertEquals(
        ParallelSettings.fixed(2, 1, 1), parse(REQUIRED + "parallel { pp = 2 }").parallel());
    assertEquals(
        ParallelSettings.fixed(1, 2, 1), parse(REQUIRED + "parallel.tp = \"2\"").parallel());
    assertEquals(ParallelSettings.fixed(1, 1, 1), parse(REQUIRED + "parallel {}").parallel());
    assertEquals(4, ParallelSettings.fixed(2, 1, 2).worldSize());
    assertEquals("pp=2 tp=1 dp=2", ParallelSettings.fixed(2, 1, 2).toString());
    assertEquals("auto", ParallelSettings.AUTO.toString());
    assertThrows(IllegalArgumentException.class, () -> ParallelSettings.fixed(0, 1, 1));
    assertThrows(IllegalArgumentException.class, () -> new ParallelSettings(true, 2, 1, 1));
  }

  @Test
  void fullFile() throws Exception {
    JobConfig c =
        parse(
            """
            model = "/models/llama"
            data { train = "d/train.jsonl", eval = "d/eval.jsonl", format = CHAT, shuffle = false,
                   skip-malformed = yes }
            lora { r = 8, alpha = 16.5, dropout = 0, targets = [q_proj, K_PROJ, down_proj],
                   init = "adapters/base" }
            optimizer { lr = 1e-3, betas = [0.8, 0.95], eps = 1e-6, weight-decay = 0.01,
                        schedule = Cosine, warmup-steps = 50, max-grad-norm = 0 }
            batch { global = 32, micro = 8, seq-len = 2048 }
            steps = 123
            precision { mode = BF16, fp32-warmup-steps = 0 }
            gradient-checkpointing = true
            checkpoint { every = 10, keep = 1 }
            eval { every = 5, max-new-tokens = 128 }
            output = "runs/x"
            seed = -7
            threads = 4
            parallel { pp = 2, dp = 2 }
            """);
    assertEquals(Path.of("/models/llama"), c.model());
    assertEquals(
        new DataSettings(
            Path.of("d/train.jsonl"), Path.of("d/eval.jsonl"), Format.CHAT, false, true),
        c.data());
    assertEquals(
        new LoraSettings(
            8, 16.5, 0.0, List.of("q_proj", "k_proj", "down_proj"), Path.of("adapters/base")),
        c.lora());
    assertEquals(
        new OptimizerSettings(1e-3, 0.8, 0.95, 1e-6, 0.01, Schedule.COSINE, 50, 0.0),
        c.optimizer());
    assertEquals(new BatchSettings(32, 8, 2048), c.batch());
    assertEquals(123, c.steps());
    assertEquals(-1, c.epochs());
    assertEquals(new PrecisionSettings("bf16", 0, 65536), c.precision());
    assertTrue(c.gradientCheckpointing());
    assertEquals(new CheckpointSettings(10, 1), c.checkpoint());
    assertEquals(new EvalSettings(5, 128), c.eval());
    assertEquals(Path.of("runs/x"), c.output());
    assertEquals(-7, c.seed());
    assertEquals(4, c.threads());
    assertEquals(ParallelSettings.fixed(2, 1, 2), c.parallel());
  }

  @Test
  void relativePathsAreKeptAsWrittenNotResolvedAgainstTheFile() throws Exception {
    JobConfig c = JobConfig.parse(REQUIRED + "lora.init = ../a", Path.of("/etc/jobs/job.conf"));
    assertEquals(Path.of("m"), c.model());
    assertFalse(c.model().isAbsolute());
    assertEquals(Path.of("../a"), c.lora().init());
  }

  @Test
  void substitutionsSeeTheJobTheDefaultsAndTheEnvironment() throws Exception {
    JobConfig c = parse(REQUIRED + "output = ${model}\"-run\"\nsteps = ${checkpoint.every}");
    assertEquals(Path.of("m-run"), c.output());
    assertEquals(200, c.steps());
  }

  @Test
  void epochsReplaceTheDefaultSteps() throws Exception {
    JobConfig c = parse(REQUIRED + "epochs = 3");
    assertEquals(-1, c.steps());
    assertEquals(3, c.epochs());
    assertEquals(19, c.totalSteps(100)); // ceil(3 * 100 / 16)
    assertEquals(3, c.totalSteps(16));
    assertEquals(0, c.totalSteps(0));
    assertThrows(IllegalArgumentException.class, () -> c.totalSteps(-1));
  }

  @Test
  void totalStepsIgnoresTheDataWhenStepsAreGiven() throws Exception {
    JobConfig c = parse(REQUIRED + "steps = 7");
    assertEquals(7, c.totalSteps(100));
    assertEquals(7, c.totalSteps(1_000_000));
  }

  @Test
  void totalStepsDoesNotOverflow() throws Exception {
    JobConfig c = parse(REQUIRED + "epochs = 1000, batch { global = 1, micro = 1 }");
    assertEquals(1000L * Integer.MAX_VALUE, c.totalSteps(Integer.MAX_VALUE));
  }

  @Test
  void stepsAndEpochsAreExclusiveInTheRecordToo() throws Exception {
    JobConfig c = parse(REQUIRED);
    assertThrows(
        IllegalArgumentException.class,
        () ->
            new JobConfig(
                c.file(),
                c.model(),
                c.data(),
                c.lora(),
                c.optimizer(),
                c.batch(),
                10,
                2,
                c.precision(),
                false,
                c.checkpoint(),
                c.eval(),
                c.output(),
                1,
                0,
                c.quantization(),
                c.parallel(),
                c.elastic()));
  }

  @Test
  void loadsAFileWithRelativeIncludes() throws Exception {
    Files.writeString(dir.resolve("base.conf"), "model = base-model\nlora.r = 4\n");
    Path job = dir.resolve("job.conf");
    Files.writeString(job, "include \"base.conf\"\ndata.train = t\noutput = o\nlora.r = 8\n");
    JobConfig c = JobConfig.load(job);
    assertEquals(job, c.file());
    assertEquals(Path.of("base-model"), c.model());
    assertEquals(8, c.lora().r());
  }

  @Test
  void loadReportsErrorsWithTheFileAndLine() throws Exception {
    Path job = dir.resolve("job.conf");
    Files.writeString(job, REQUIRED + "batch.global = [\n");
    JobConfigException e = assertThrows(JobConfigException.class, () -> JobConfig.load(job));
    assertTrue(e.getMessage().startsWith(job + ": line 3: "), e.getMessage());
    assertEquals(job, e.file());
  }

  @Test
  void loadNamesAMissingFile() {
    Path job = dir.resolve("nope.conf");
    JobConfigException e = assertThrows(JobConfigException.class, () -> JobConfig.load(job));
    assertEquals(job + ": job file not found", e.getMessage());
    assertNull(e.key());
  }

  @Test
  void loadRejectsADirectory() {
    JobConfigException e = assertThrows(JobConfigException.class, () -> JobConfig.load(dir));
    assertEquals(dir + ": not a job file (not a regular file)", e.getMessage());
  }

  @Test
  void errorsCarryTheKey() {
    JobConfigException e =
        assertThrows(JobConfigException.class, () -> parse(REQUIRED + "batch.micro = 0"));
    assertEquals("batch.micro", e.key());
    assertEquals(FILE, e.file());
  }

  @Test
  void theExampleJobParses() throws Exception {
    Path example = Path.of(System.getProperty("basedir", "."), "../conf/example-job.conf");
    JobConfig c = JobConfig.load(example);
    assertEquals(Path.of("models/TinyLlama-1.1B-Chat"), c.model());
    assertEquals(Path.of("data/alpaca/eval.jsonl"), c.data().eval());
    assertEquals(List.of("q_proj", "k_proj", "v_proj", "o_proj"), c.lora().targets());
    assertEquals(Schedule.COSINE, c.optimizer().schedule());
    assertEquals(3, c.epochs());
    assertEquals(-1, c.steps());
    assertEquals("bf16", c.precision().mode());
    assertEquals(Path.of("runs/tinyllama-alpaca"), c.output());
    assertEquals(ParallelSettings.AUTO, c.parallel());
  }
}
