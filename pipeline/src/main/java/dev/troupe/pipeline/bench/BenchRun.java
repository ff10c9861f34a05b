package dev.troupe.pipeline.bench;

import dev.troupe.pipeline.data.Batch;
import dev.troupe.pipeline.data.Example;
import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.lora.LoraParameters;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.model.AllReduce;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.HfModel;
import dev.troupe.pipeline.train.AdamW;
import dev.troupe.pipeline.train.LossScaler;
import dev.troupe.pipeline.train.ResidentMemory;
import dev.troupe.pipeline.train.TrainStep;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Random;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * Times one benchmark configuration in this process: {@code warmup} untimed optimizer steps, then
 * {@code steps} timed ones (forward, loss, backward, clipping at 1.0, AdamW at lr 1e-4), each on a
 * fresh synthetic batch; then the loss on a held-out batch. LoRA: r=16, alpha=32 on q_proj and
 * v_proj, dropout 0, B zeros as PEFT initializes it. The data: each row a random phrase of 16 token
 * ids repeated to the sequence length (a copy task the model can learn), the same contract as
 * {@code bench/pytorch_peer.py}.
 */
public final class BenchRun {
  private BenchRun() {}

  /** What to run. */
  public record Settings(
      Path model,
      BenchMode mode,
      int seq,
      int batch,
      int steps,
      int warmup,
      int threads,
      long seed,
      boolean checkpointing) {
    public Settings {
      if (seq < 2 || batch < 1 || steps < 1 || warmup < 0 || threads < 0) {
        throw new IllegalArgumentException(
            "need seq >= 2, batch >= 1, steps >= 1, warmup >= 0, threads >= 0");
      }
    }
  }

  /** What was measured. */
  public record Result(
      BenchMode mode,
      double tokensPerS,
      double medianStepS,
      double[] stepS,
      double peakRssMib,
      double lossFirst,
      double lossLast,
      double evalLoss,
      long trainable,
      int skipped) {}

  public static Result run(Settings s, PrintStream progress) throws IOException {
    Torch.init();
    if (s.threads() > 0) torch.set_num_threads(s.threads());
    BenchMode mode = s.mode();
    try (HfModel hf = HfModel.open(s.model());
        CausalLm model = CausalLm.load(hf, mode.dtype(), null, k -> mode.base())) {
      int vocab = hf.config().vocabSize();
      if (progress != null) {
        progress.printf(
            "%s: model loaded, frozen weights %.1f MiB, resident %.0f MiB (peak %.0f MiB)%n",
            mode.label(),
            model.frozenWeightBytes() / 1048576.0,
            ResidentMemory.bytes() / 1048576.0,
            ResidentMemory.peakBytes() / 1048576.0);
      }
      LoraParameters lora = null;
      List<Tensor> params;
      if (mode.full()) {
        params = model.trainAllWeights();
      } else {
        lora =
            LoraParameters.initialize(
                hf.config(), 16, 32, EnumSet.of(LoraTarget.Q_PROJ, LoraTarget.V_PROJ), s.seed());
        model.lendLora(lora.weights(), 0.0);
        params = lora.parameters();
      }
      long trainable = params.stream().mapToLong(Tensor::numel).sum();
      try (AdamW optimizer = new AdamW(params, 0.9, 0.999, 1e-8, 0.0)) {
        LossScaler scaler = new LossScaler(LossScaler.INITIAL_SCALE, 0);
        boolean fp16 = mode.dtype() == dev.troupe.pipeline.engine.ComputeDtype.FP16;
        double[] times = new double[s.steps()];
        double lossFirst = Double.NaN;
        double lossLast = Double.NaN;
        int skipped = 0;
        for (int step = 0; step < s.warmup() + s.steps(); step++) {
          Batch b = batch(s, vocab, s.seed() * 1_000_003L + step);
          long t0 = System.nanoTime();
          TrainStep.Result r =
              TrainStep.run(
                  model,
                  params,
                  optimizer,
                  List.of(b),
                  1e-4,
                  1.0,
                  fp16 ? scaler.scale() : 1.0,
                  s.seed() + step,
                  s.checkpointing() && !mode.full());
          double seconds = (System.nanoTime() - t0) / 1e9;
          if (fp16) scaler = scaler.update(r.skipped());
          if (r.skipped()) skipped++;
          if (step == 0) lossFirst = r.loss();
          lossLast = r.loss();
          boolean timed = step >= s.warmup();
          if (timed) times[step - s.warmup()] = seconds;
          if (progress != null) {
            progress.printf(
                "%s step %d/%d%s: %.3f s, loss %.4f, resident %.0f MiB (peak %.0f MiB)%n",
                mode.label(),
                step + 1,
                s.warmup() + s.steps(),
                timed ? "" : " (warm-up)",
                seconds,
                r.loss(),
                ResidentMemory.bytes() / 1048576.0,
                ResidentMemory.peakBytes() / 1048576.0);
          }
        }
        double evalLoss = evalLoss(model, batch(s, vocab, s.seed() + 10_000));
        double[] sorted = times.clone();
        Arrays.sort(sorted);
        int n = sorted.length;
        double median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        return new Result(
            mode,
            (double) s.batch() * s.seq() / median,
            median,
            times,
            ResidentMemory.peakBytes() / (1024.0 * 1024.0),
            lossFirst,
            lossLast,
            evalLoss,
            trainable,
            skipped);
      } finally {
        if (lora != null) {
          model.returnLora();
          lora.close();
        }
      }
    }
  }

  /** Rows of a random 16-token phrase repeated to {@code seq} tokens; every token is a label. */
  static Batch batch(Settings s, int vocab, long seed) {
    Random r = new Random(seed);
    List<Example> rows = new ArrayList<>();
    for (int i = 0; i < s.batch(); i++) {
      long[] phrase = new long[16];
      for (int t = 0; t < phrase.length; t++) phrase[t] = 3 + r.nextInt(vocab - 3);
      long[] ids = new long[s.seq()];
      for (int t = 0; t < ids.length; t++) ids[t] = phrase[t % phrase.length];
      rows.add(new Example(ids, ids.clone()));
    }
    return Batch.of(rows, s.seq(), 0);
  }

  private static double evalLoss(CausalLm model, Batch b) {
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      Tensor ids = Torch.fromLongs(b.inputIds(), b.rows(), b.seqLen());
      Tensor labels = Torch.fromLongs(b.labels(), b.rows(), b.seqLen());
      Tensor hidden = model.forwardLayers(model.embed(ids), AllReduce.NONE);
      // in chunks, as in training: the full logits of a large vocabulary would set the peak
      return TrainStep.headForwardBackward(model, hidden, labels, 0.0) / b.labelTokens();
    }
  }
}
