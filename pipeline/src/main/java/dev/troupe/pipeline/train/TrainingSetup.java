package dev.troupe.pipeline.train;

import dev.troupe.pipeline.data.Format;
import dev.troupe.pipeline.data.JsonlDataset;
import dev.troupe.pipeline.data.TextEncoding;
import dev.troupe.pipeline.data.chat.ChatTemplate;
import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.job.DataSettings;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.lora.LoraParameters;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.lora.PeftAdapter;
import dev.troupe.pipeline.model.CausalLm;
import dev.troupe.pipeline.model.HfModel;
import dev.troupe.pipeline.model.ModelFormatException;
import dev.troupe.pipeline.quant.QuantState;
import dev.troupe.pipeline.tokenizer.TextTokenizer;
import java.io.IOException;
import java.io.PrintStream;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;

/**
 * What a job needs before its first step: the base model folder, tokenizer, datasets, the trainable
 * LoRA parameters (fresh or from {@code lora.init}) and their optimizer.
 */
public record TrainingSetup(
    HfModel model,
    TextTokenizer tokenizer,
    JsonlDataset train,
    JsonlDataset eval,
    LoraParameters lora,
    AdamW optimizer,
    long padId,
    List<Long> eos)
    implements AutoCloseable {

  /** Opens the job's model folder and data and makes its LoRA parameters and optimizer. */
  public static TrainingSetup open(JobConfig job, PrintStream out) throws IOException {
    HfModel model = HfModel.open(job.model());
    TextTokenizer tokenizer = null;
    LoraParameters lora = null;
    try {
      Format format = job.data().format();
      List<Long> eos = model.eosTokenIds();
      if (format != Format.TOKENS || model.hasTokenizer()) {
        if (!model.hasTokenizer()) {
          throw new ModelFormatException(
              job.model(),
              "data.format "
                  + format.name().toLowerCase(Locale.ROOT)
                  + " needs the model's tokenizer.json");
        }
        tokenizer = TextTokenizer.open(job.model());
      }
      ChatTemplate chatTemplate = null;
      if (format == Format.CHAT) {
        if (job.data().chatTemplate() == DataSettings.ChatTemplateChoice.MODEL) {
          chatTemplate = ChatTemplate.fromModel(job.model()).orElse(null);
        }
        out.println(
            chatTemplate == null
                ? "chat format: Troupe's default template (see JsonlDataset)"
                : "chat format: " + chatTemplate.origin());
      }
      long eosId = eos.isEmpty() ? -1 : eos.get(0);
      TextEncoding encoding =
          new TextEncoding(
              format == Format.TOKENS ? null : tokenizer,
              model.config().bosTokenId(),
              eosId,
              chatTemplate);
      int seqLen = job.batch().seqLen();
      JsonlDataset train =
          JsonlDataset.load(
              job.data().train(), format, encoding, seqLen, job.data().skipMalformed());
      if (train.size() == 0) throw new IOException(job.data().train() + ": no training examples");
      JsonlDataset eval =
          job.data().eval() == null
              ? null
              : JsonlDataset.load(
                  job.data().eval(), format, encoding, seqLen, job.data().skipMalformed());
      report(out, train);
      if (eval != null) report(out, eval);
      if (job.lora().init() != null) {
        try (PeftAdapter init = PeftAdapter.open(job.lora().init())) {
          lora = LoraParameters.fromAdapter(init, model.config());
          if (init.r() != job.lora().r() || init.alpha() != job.lora().alpha()) {
            out.println(
                "note: lora.init "
                    + job.lora().init()
                    + " has r="
                    + init.r()
                    + ", alpha="
                    + init.alpha()
                    + "; these take precedence over lora.r and lora.alpha");
          }
        }
      } else {
        EnumSet<LoraTarget> targets = EnumSet.noneOf(LoraTarget.class);
        for (String t : job.lora().targets()) targets.add(LoraTarget.fromModuleName(t));
        lora =
            LoraParameters.initialize(
                model.config(), job.lora().r(), job.lora().alpha(), targets, job.seed());
      }
      var o = job.optimizer();
      AdamW optimizer =
          new AdamW(lora.parameters(), o.beta1(), o.beta2(), o.eps(), o.weightDecay());
      out.printf(
          "model %s: %d layers, hidden %d; LoRA r=%d on %s: %,d trainable parameters%n",
          job.model(),
          model.config().numLayers(),
          model.config().hiddenSize(),
          lora.r(),
          lora.targets().stream().map(LoraTarget::moduleName).toList(),
          lora.count());
      return new TrainingSetup(
          model, tokenizer, train, eval, lora, optimizer, Math.max(0, eosId), eos);
    } catch (IOException | RuntimeException e) {
      if (lora != null) lora.close();
      if (tokenizer != null) tokenizer.close();
      model.close();
      throw e;
    }
  }

  private static void report(PrintStream out, JsonlDataset data) {
    out.printf(
        "%s: %d examples%s%n",
        data.file(),
        data.size(),
        data.skipped() > 0 ? " (" + data.skipped() + " malformed lines skipped)" : "");
  }

  /** The frozen base model in {@code dtype}. */
  CausalLm loadModel(ComputeDtype dtype) throws ModelFormatException {
    return CausalLm.load(model, dtype, null);
  }

  /** The frozen base model in {@code dtype}, each linear layer held as {@code quant} says. */
  CausalLm loadModel(ComputeDtype dtype, QuantState quant) throws ModelFormatException {
    return quant == null ? loadModel(dtype) : CausalLm.load(model, dtype, null, quant::format);
  }

  /**
   * One pipeline stage and tensor shard of the frozen base model in {@code dtype}, each linear
   * layer held as {@code quant} says ({@code null}: none quantized).
   */
  public CausalLm loadStage(
      ComputeDtype dtype,
      QuantState quant,
      dev.troupe.pipeline.model.StageSpec stage,
      dev.troupe.pipeline.model.ShardSpec shard)
      throws ModelFormatException {
    return CausalLm.load(
        model.config(),
        model.weights(),
        dtype,
        stage,
        shard,
        null,
        quant == null ? null : quant::format);
  }

  @Override
  public void close() throws IOException {
    optimizer.close();
    lora.close();
    if (tokenizer != null) tokenizer.close();
    model.close();
  }
}
