package dev.troupe.pipeline.job;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigObject;
import com.typesafe.config.ConfigOrigin;
import com.typesafe.config.ConfigParseOptions;
import com.typesafe.config.ConfigSyntax;
import com.typesafe.config.ConfigUtil;
import com.typesafe.config.ConfigValue;
import com.typesafe.config.ConfigValueType;
import dev.troupe.pipeline.data.Format;
import dev.troupe.pipeline.lora.LoraTarget;
import dev.troupe.pipeline.quant.QuantFormat;
import dev.troupe.pipeline.quant.QuantPolicy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;

/** Reads a job file over the {@code troupe.job} defaults, checks its keys and builds the record. */
final class JobConfigParser {
  /** Where the defaults live in {@code reference.conf}. */
  static final String DEFAULTS_PATH = "troupe.job";

  private static final String FRACTION = "must be a number in [0, 1)";
  private static final String POSITIVE = "must be a positive number";
  private static final String NON_NEGATIVE = "must be a non-negative number";

  private JobConfigParser() {}

  /** The defaults, read once from every {@code reference.conf} on the class path. */
  private static final class Defaults {
    static final Config JOB =
        ConfigFactory.defaultReference(JobConfigParser.class.getClassLoader())
            .getConfig(DEFAULTS_PATH);
  }

  static JobConfig load(Path file) throws JobConfigException {
    if (!Files.exists(file)) throw new JobConfigException(file, "job file not found");
    if (!Files.isRegularFile(file)) {
      throw new JobConfigException(file, "not a job file (not a regular file)");
    }
    if (!Files.isReadable(file)) throw new JobConfigException(file, "job file not readable");
    Config user;
    try {
      user = ConfigFactory.parseFile(file.toFile(), options(file));
    } catch (ConfigException e) {
      throw hoconError(file, e);
    }
    return build(user, file);
  }

  static JobConfig parse(String hocon, Path file) throws JobConfigException {
    Config user;
    try {
      user = ConfigFactory.parseString(hocon, options(file));
    } catch (ConfigException e) {
      throw hoconError(file, e);
    }
    return build(user, file);
  }

  private static ConfigParseOptions options(Path file) {
    return ConfigParseOptions.defaults()
        .setSyntax(ConfigSyntax.CONF)
        .setOriginDescription(file.toString())
        .setAllowMissing(false);
  }

  /** "{@code <file>: line <n>: <Typesafe's message>}" for a parse or substitution error. */
  private static JobConfigException hoconError(Path file, ConfigException e) {
    String what = e.getMessage();
    String prefix = file + ": ";
    if (what.startsWith(prefix)) what = what.substring(prefix.length());
    ConfigOrigin origin = e.origin();
    if (origin != null && origin.lineNumber() > 0 && what.startsWith(origin.lineNumber() + ": ")) {
      what = "line " + what;
    }
    return new JobConfigException(file, what, e);
  }

  private static JobConfig build(Config user, Path file) throws JobConfigException {
    Config defaults = Defaults.JOB;
    Config merged;
    try {
      merged = user.withFallback(defaults).resolve();
    } catch (ConfigException e) {
      throw hoconError(file, e);
    }
    SettingsReader r = new SettingsReader(merged, file);
    checkKeys(merged.root(), defaults, new ArrayList<>(), r);

    Path model = r.path("model", true);
    Path trainData = r.path("data.train", true);
    Path output = r.path("output", true);
    DataSettings data =
        new DataSettings(
            trainData,
            r.path("data.eval", false),
            r.enumValue("data.format", Format.class),
            r.bool("data.shuffle"),
            r.bool("data.skip-malformed"),
            r.enumValue("data.chat-template", DataSettings.ChatTemplateChoice.class));
    LoraSettings lora =
        new LoraSettings(
            r.smallInteger("lora.r", 1),
            r.number("lora.alpha", a -> a > 0, POSITIVE),
            r.number("lora.dropout", d -> d >= 0 && d < 1, FRACTION),
            targets(r),
            r.path("lora.init", false));
    List<Double> betas =
        r.numbers(
            "optimizer.betas", 2, b -> b >= 0 && b < 1, "must be a list of two numbers in [0, 1)");
    OptimizerSettings optimizer =
        new OptimizerSettings(
            r.number("optimizer.lr", v -> v > 0, POSITIVE),
            betas.get(0),
            betas.get(1),
            r.number("optimizer.eps", v -> v > 0, POSITIVE),
            r.number("optimizer.weight-decay", v -> v >= 0, NON_NEGATIVE),
            r.enumValue("optimizer.schedule", Schedule.class),
            r.integer("optimizer.warmup-steps", 0),
            r.number("optimizer.max-grad-norm", v -> v >= 0, NON_NEGATIVE));
    int global = r.smallInteger("batch.global", 1);
    int micro = r.smallInteger("batch.micro", 1);
    BatchSettings batch = new BatchSettings(global, micro, r.smallInteger("batch.seq-len", 2));
    if (global % micro != 0) {
      throw r.error(
          "batch.global", "must be a multiple of batch.micro (" + micro + "), got " + global);
    }

    long steps = -1;
    int epochs = -1;
    if (r.isSet("epochs")) {
      if (user.root().containsKey("steps") && r.isSet("steps")) {
        throw r.error("epochs", "cannot be given together with steps (give one of the two)");
      }
      epochs = r.smallInteger("epochs", 1);
    } else if (r.isSet("steps")) {
      steps = r.integer("steps", 1);
    } else {
      throw r.error("steps", "required (or give epochs)");
    }

    PrecisionSettings precision =
        new PrecisionSettings(
            r.choice("precision.mode", List.of("fp32", "bf16", "fp16")),
            r.integer("precision.fp32-warmup-steps", 0),
            r.number("precision.initial-loss-scale", v -> v > 0, "a number > 0"));
    CheckpointSettings checkpoint =
        new CheckpointSettings(
            r.integer("checkpoint.every", 1), r.smallInteger("checkpoint.keep", 1));
    EvalSettings eval =
        new EvalSettings(r.integer("eval.every", 1), r.smallInteger("eval.max-new-tokens", 1));
    return new JobConfig(
        file,
        model,
        data,
        lora,
        optimizer,
        batch,
        steps,
        epochs,
        precision,
        r.bool("gradient-checkpointing"),
        checkpoint,
        eval,
        output,
        r.integer("seed", Long.MIN_VALUE),
        r.smallInteger("threads", 0),
        quantization(r),
        parallel(r),
        elastic(r));
  }

  private static ElasticSettings elastic(SettingsReader r) throws JobConfigException {
    int min = r.smallInteger("elastic.min-devices", 1);
    int max = r.smallInteger("elastic.max-devices", 0);
    if (max > 0 && max < min) {
      throw r.error(
          "elastic.max-devices",
          "must be 0 (no limit) or at least elastic.min-devices (" + min + "), got " + max);
    }
    return new ElasticSettings(
        min,
        max,
        r.number("elastic.cooldown-seconds", v -> v >= 0, NON_NEGATIVE),
        r.number("elastic.min-gain", v -> v > 0 && v < 1, "must be a number in (0, 1)"));
  }

  /**
   * {@code parallel}: the string {@code auto} or an object of pp, tp and dp, each 1 if left out.
   */
  private static ParallelSettings parallel(SettingsReader r) throws JobConfigException {
    String key = "parallel";
    List<String> known = List.of("dp", "pp", "tp");
    String expected = "must be auto or an object with keys " + String.join(", ", known);
    switch (r.valueType(key)) {
      case STRING -> {
        if (!r.string(key).trim().equalsIgnoreCase("auto")) throw r.invalid(key, expected);
        return ParallelSettings.AUTO;
      }
      case OBJECT -> {
        for (String k : new TreeSet<>(r.keys(key))) {
          if (!known.contains(k)) {
            throw r.error(
                ConfigUtil.joinPath(key, k),
                "unknown key (known: " + String.join(", ", known) + ")");
          }
        }
        int[] v = new int[3];
        String[] names = {"pp", "tp", "dp"};
        for (int i = 0; i < 3; i++) {
          String k = key + "." + names[i];
          v[i] = r.isSet(k) ? r.smallInteger(k, 1) : 1;
        }
        return ParallelSettings.fixed(v[0], v[1], v[2]);
      }
      default -> throw r.invalid(key, expected);
    }
  }

  private static QuantizationSettings quantization(SettingsReader r) throws JobConfigException {
    QuantFormat base =
        QuantFormat.parse(r.choice("quantization.base", List.of("none", "int8", "int4", "nf4")));
    double promote = r.number("quantization.promote-above", v -> v > 0, POSITIVE);
    double demote =
        r.number(
            "quantization.demote-below",
            v -> v >= 0 && v < promote,
            "must be a number >= 0 below quantization.promote-above (" + promote + ")");
    QuantFormat fourBit = base == QuantFormat.INT4 ? QuantFormat.INT4 : QuantFormat.NF4;
    return new QuantizationSettings(
        base,
        r.integer("quantization.check-every", 0),
        r.smallInteger("quantization.calibration-sequences", 1),
        new QuantPolicy.Settings(
            promote,
            demote,
            r.smallInteger("quantization.demote-after", 1),
            r.integer("quantization.memory-budget-mib", 0) * 1024L * 1024L,
            fourBit));
  }

  /**
   * Fails on the first key (depth first, in sorted order) of the merged tree that the defaults do
   * not have, listing the keys known at that level, and on a non-object where the defaults have an
   * object. The defaults' own keys all pass, so only the job file's can fail.
   */
  private static void checkKeys(
      ConfigObject merged, Config defaults, List<String> prefix, SettingsReader r)
      throws JobConfigException {
    for (String key : new TreeSet<>(merged.keySet())) {
      List<String> path = new ArrayList<>(prefix);
      path.add(key);
      String joined = ConfigUtil.joinPath(path);
      if (!defaults.hasPathOrNull(joined)) {
        Set<String> known =
            new TreeSet<>(
                prefix.isEmpty()
                    ? defaults.root().keySet()
                    : defaults.getObject(ConfigUtil.joinPath(prefix)).keySet());
        throw r.error(joined, "unknown key (known: " + String.join(", ", known) + ")");
      }
      if (defaults.getIsNull(joined)) continue;
      ConfigValue value = merged.get(key);
      if (defaults.getValue(joined).valueType() == ConfigValueType.OBJECT) {
        if (!(value instanceof ConfigObject object)) {
          Set<String> keys = new TreeSet<>(defaults.getObject(joined).keySet());
          throw r.invalid(joined, "must be an object with keys " + String.join(", ", keys));
        }
        checkKeys(object, defaults, path, r);
      }
    }
  }

  private static List<String> targets(SettingsReader r) throws JobConfigException {
    String key = "lora.targets";
    List<String> known = new ArrayList<>();
    for (LoraTarget t : LoraTarget.values()) known.add(t.moduleName());
    List<String> targets = new ArrayList<>();
    Set<String> seen = new HashSet<>();
    for (String s : r.strings(key, "must be a list of module names")) {
      String name = s.trim().toLowerCase(Locale.ROOT);
      if (!known.contains(name)) {
        throw r.error(
            key, "unknown module \"" + s + "\" (known: " + String.join(", ", known) + ")");
      }
      if (!seen.add(name)) throw r.error(key, "lists \"" + name + "\" twice");
      targets.add(name);
    }
    if (targets.isEmpty()) throw r.invalid(key, "must name at least one module");
    return targets;
  }
}
