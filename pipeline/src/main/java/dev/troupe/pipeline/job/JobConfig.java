package dev.troupe.pipeline.job;

import java.nio.file.Path;
import java.util.Objects;

/**
 * A fine-tuning job, read from a HOCON job file on top of the defaults under {@code troupe.job} in
 * the pipeline's {@code reference.conf}; see {@code conf/example-job.conf} for every key.
 *
 * <p>Paths ({@code model}, {@code data.train}, {@code data.eval}, {@code lora.init}, {@code
 * output}) are kept as written ({@link Path#of}), so relative ones resolve against the working
 * directory of the process, not against the job file's folder.
 *
 * @param file the job file, as given; used in error messages
 * @param model the Hugging Face model folder
 * @param steps total optimizer steps, or -1 when {@code epochs} is given
 * @param epochs passes over the training data, or -1 when {@code steps} is given
 * @param gradientCheckpointing whether decoder layers recompute activations in the backward pass
 * @param output the run folder for checkpoints, logs and the final adapter
 * @param seed the seed of every random choice (initialization, dropout, shuffling)
 * @param threads libtorch's intra-op threads; 0 for its default (all cores)
 * @param quantization how the frozen base weights are held
 * @param parallel how a distributed run splits the job over devices; ignored on one device
 * @param elastic when a distributed run takes in devices that join, and its device limits
 */
public record JobConfig(
    Path file,
    Path model,
    DataSettings data,
    LoraSettings lora,
    OptimizerSettings optimizer,
    BatchSettings batch,
    long steps,
    int epochs,
    PrecisionSettings precision,
    boolean gradientCheckpointing,
    CheckpointSettings checkpoint,
    EvalSettings eval,
    Path output,
    long seed,
    int threads,
    QuantizationSettings quantization,
    ParallelSettings parallel,
    ElasticSettings elastic) {
  public JobConfig {
    Objects.requireNonNull(elastic, "elastic");
    Objects.requireNonNull(quantization, "quantization");
    Objects.requireNonNull(parallel, "parallel");
    Objects.requireNonNull(file, "file");
    Objects.requireNonNull(model, "model");
    Objects.requireNonNull(data, "data");
    Objects.requireNonNull(lora, "lora");
    Objects.requireNonNull(optimizer, "optimizer");
    Objects.requireNonNull(batch, "batch");
    Objects.requireNonNull(precision, "precision");
    Objects.requireNonNull(checkpoint, "checkpoint");
    Objects.requireNonNull(eval, "eval");
    Objects.requireNonNull(output, "output");
    if ((steps > 0) == (epochs > 0)) {
      throw new IllegalArgumentException(
          "exactly one of steps and epochs must be positive: " + steps + ", " + epochs);
    }
  }

  /**
   * Reads a job file, falling back to {@code reference.conf}'s {@code troupe.job} for keys it does
   * not set. HOCON {@code include}s resolve against the file's folder; substitutions may name
   * environment variables.
   *
   * @throws JobConfigException if the file is missing or malformed, has an unknown key or an
   *     invalid value
   */
  public static JobConfig load(Path file) throws JobConfigException {
    return JobConfigParser.load(file);
  }

  /**
   * Like {@link #load} for HOCON text; {@code file} only names the source in error messages.
   *
   * @throws JobConfigException if the text is malformed, has an unknown key or an invalid value
   */
  public static JobConfig parse(String hocon, Path file) throws JobConfigException {
    return JobConfigParser.parse(hocon, file);
  }

  /**
   * Total optimizer steps given the number of training examples: steps, or ceil(epochs * examples /
   * batch.global).
   */
  public long totalSteps(int trainExamples) {
    if (steps > 0) return steps;
    if (trainExamples < 0) {
      throw new IllegalArgumentException("negative number of examples: " + trainExamples);
    }
    return Math.ceilDiv((long) epochs * trainExamples, (long) batch.global());
  }
}
