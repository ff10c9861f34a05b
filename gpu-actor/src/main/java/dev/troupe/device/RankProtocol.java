package dev.troupe.device;

import dev.troupe.persistence.ClusterMessage;
import dev.troupe.persistence.TensorBytes;
import dev.troupe.pipeline.dist.StageWorker;
import dev.troupe.pipeline.train.QuantCheck;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * How the driver of a distributed run (a child of the coordinator) talks to the device actors that
 * hold its ranks, and how those talk to each other. A run has an id of its own, so that messages of
 * an earlier run of the same job are told apart. One step is {@link Go} to every rank, a {@link
 * Half} from each, then {@link Apply} to every rank and an {@link Applied} from each.
 */
public final class RankProtocol {
  private RankProtocol() {}

  /** What a device actor hears as a rank. */
  public sealed interface ToRank extends DeviceActor.Command
      permits Prepare,
          Go,
          Apply,
          Collect,
          Exchange,
          Release,
          Keep,
          Kept,
          Recall,
          Evaluate,
          QuantMeasure,
          QuantApply {}

  /**
   * Takes rank {@code rank} of plan {@code pp × tp × dp} (stage boundaries {@code boundaries}) of
   * job {@code jobId}: loads its stage and shard, and restores {@code state} (a checkpoint's
   * tensors for its stage, empty for a fresh start) with AdamW at {@code optimizerStep}.
   *
   * @param peers the device actor of every rank, in rank order
   * @param buddy where a stage's first rank sends a copy of its state after every step: a device on
   *     another node (empty where there is none)
   * @param quantization the formats the layers are held in and their calm counts ({@code
   *     QuantState}'s JSON: the job's base for a fresh start, else as restored with {@code state});
   *     empty where the base is not quantized
   */
  public record Prepare(
      String runId,
      String jobId,
      String config,
      int pp,
      int tp,
      int dp,
      int[] boundaries,
      int rank,
      List<ActorRef<DeviceActor.Command>> peers,
      Map<String, TensorBytes> state,
      long optimizerStep,
      ActorRef<FromRank> driver,
      List<ActorRef<DeviceActor.Command>> buddy,
      String quantization)
      implements ToRank {}

  /** Runs the first half of 0-based step {@code step}: forward, backward, gradient sum. */
  public record Go(String runId, long step, double lossScale) implements ToRank {}

  /**
   * Runs the second half: the update, unless {@code update} is false. {@code lossScale} and {@code
   * growthTracker} are the loss scaler's state after this step, kept with the copies of the state.
   */
  public record Apply(
      String runId,
      long step,
      double clip,
      boolean update,
      double lr,
      double lossScale,
      int growthTracker)
      implements ToRank {}

  /**
   * Keep this copy of the trainable state of layers {@code [firstLayer, endLayer)} of job {@code
   * jobId} after {@code steps} steps (a device keeps the four newest of each layer range, of one
   * job); answered with {@link Kept} to {@code ackTo} when given.
   */
  public record Keep(
      String runId, String jobId, Copy copy, List<ActorRef<DeviceActor.Command>> ackTo)
      implements ToRank {}

  /** A copy was kept (internal to the ranks). */
  public record Kept(String runId, int firstLayer, long steps) implements ToRank {}

  /**
   * Asks for the copies a device keeps of job {@code jobId}'s state; answered with {@link Copies}
   * to {@code replyTo} (a plan run's driver), or, where {@code device} is given instead, with
   * {@link DeviceActor.Recalled} to that device actor (a run of a whole job). Copies are large: the
   * answer goes to a path on Artery's large-message lane, which a device actor's message adapter is
   * not (see docs/architecture.md).
   */
  public record Recall(
      String jobId, ActorRef<FromRank> replyTo, ActorRef<DeviceActor.Command> device)
      implements ToRank {

    /** A recall answered to a plan run's driver. */
    public static Recall toDriver(String jobId, ActorRef<FromRank> driver) {
      return new Recall(jobId, driver, null);
    }

    /** A recall answered to the device actor that runs a whole job. */
    public static Recall toDevice(String jobId, ActorRef<DeviceActor.Command> device) {
      return new Recall(jobId, null, device);
    }
  }

  /**
   * A copy of the trainable state of some layers after {@code steps} steps: tensors keyed as a
   * checkpoint keeps them, AdamW's step count, the loss scaler's state and, from a run on one
   * device over a quantized base, each layer's format ({@code QuantState}'s JSON; empty otherwise).
   */
  public record Copy(
      int firstLayer,
      int endLayer,
      long steps,
      Map<String, TensorBytes> tensors,
      long optimizerStep,
      double lossScale,
      int growthTracker,
      String quantization)
      implements ClusterMessage {

    /**
     * The copies that together cover every one of {@code layers} layers at {@code committed} steps,
     * merged; empty where some layer has no copy at that step (then the newest checkpoint is the
     * way back). Copies of any plan's stages fit together, so a run may start from another plan's.
     */
    public static java.util.Optional<Copy> covering(List<Copy> copies, long committed, int layers) {
      boolean[] covered = new boolean[layers];
      Map<String, TensorBytes> tensors = new java.util.LinkedHashMap<>();
      Copy any = null;
      for (Copy c : copies) {
        if (c.steps() != committed) continue;
        any = c;
        for (int l = c.firstLayer(); l < Math.min(layers, c.endLayer()); l++) covered[l] = true;
        tensors.putAll(c.tensors());
      }
      for (boolean b : covered) if (!b) return java.util.Optional.empty();
      return java.util.Optional.of(
          new Copy(
              0,
              layers,
              committed,
              tensors,
              any.optimizerStep(),
              any.lossScale(),
              any.growthTracker(),
              any.quantization()));
    }
  }

  /**
   * Evaluates the job's eval data through the stages after {@code steps} steps (every rank at once;
   * see {@code StageWorker.evaluate}).
   */
  public record Evaluate(String runId, long steps) implements ToRank {}

  /**
   * Measures the rank's layers for the quantization-error check after {@code steps} steps (every
   * rank at once; see {@code PipelineQuantCheck}); answered with {@link QuantMeasured}.
   */
  public record QuantMeasure(String runId, long steps) implements ToRank {}

  /**
   * Holds the layers as {@code state} ({@code QuantState}'s JSON: the driver's decision after the
   * check at {@code steps}) says; answered with {@link QuantApplied}.
   */
  public record QuantApply(String runId, long steps, String state) implements ToRank {}

  /** Asks for the stage's trainable state (LoRA pairs and AdamW moments). */
  public record Collect(String runId) implements ToRank {}

  /** A tensor from rank {@code from} of the run, under {@code tag} (see the Transport). */
  public record Exchange(String runId, int from, String tag, TensorBytes tensor)
      implements ToRank {}

  /** The run is over for this rank: free what it holds. */
  public record Release(String runId) implements ToRank {}

  /** What a rank answers its driver. */
  public sealed interface FromRank extends ClusterMessage
      permits Ready,
          Half,
          Applied,
          State,
          RankFailed,
          Copies,
          Evaluated,
          QuantMeasured,
          QuantApplied {}

  /** The rank is loaded; the job has {@code totalSteps} steps. */
  public record Ready(String runId, int rank, String device, long totalSteps) implements FromRank {}

  /** The first half of a step is done (see {@code StageWorker.Report}). */
  public record Half(
      String runId,
      int rank,
      int stage,
      int shard,
      int replica,
      long step,
      double lossSum,
      long tokens,
      double gradSquares,
      double seconds,
      double waitSeconds)
      implements FromRank {
    /** The rank's report, as the driver decides the step from it. */
    public StageWorker.Report report() {
      return new StageWorker.Report(
          step, rank, stage, shard, replica, lossSum, tokens, gradSquares, seconds, waitSeconds);
    }
  }

  /** The second half of step {@code step} is done. */
  public record Applied(String runId, int rank, long step) implements FromRank {}

  /** The stage's trainable state, keyed as a checkpoint keeps it. */
  public record State(String runId, int rank, Map<String, TensorBytes> tensors, long optimizerStep)
      implements FromRank {}

  /** The copies device {@code device} keeps of job {@code jobId}'s state. */
  public record Copies(String jobId, String device, List<Copy> copies) implements FromRank {}

  /** The rank's part of an evaluation after {@code steps} steps (see {@code StageWorker}). */
  public record Evaluated(
      String runId, int rank, long steps, double lossSum, long tokens, int right, int scored)
      implements FromRank {}

  /** The rank failed; the run cannot go on. */
  public record RankFailed(String runId, int rank, String reason) implements FromRank {}

  /**
   * Rank {@code rank}'s measure for the check after {@code steps} steps: its layers (empty outside
   * replica 0), the calibration loss summed and its label tokens (replica 0's last stage), the
   * bytes its frozen weights hold.
   */
  public record QuantMeasured(
      String runId,
      int rank,
      long steps,
      List<QuantCheck.Measure> layers,
      double lossSum,
      long tokens,
      long frozenBytes)
      implements FromRank {}

  /** Rank {@code rank} holds the decided formats: the calibration loss after, and its bytes. */
  public record QuantApplied(
      String runId, int rank, long steps, double lossSum, long tokens, long frozenBytes)
      implements FromRank {}
}
