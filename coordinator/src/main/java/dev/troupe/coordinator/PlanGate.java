package dev.troupe.coordinator;

import dev.troupe.pipeline.dist.Planner;
import dev.troupe.pipeline.dist.ScalingPolicy;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.model.ModelConfig;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Function;

/**
 * The gate before the running job is planned: whether the devices usable now may run it, and its
 * plan where they may. Waits are said in words that {@code status} shows; a job that cannot be
 * planned at all (a malformed job file, a missing model, no plan that fits) throws.
 */
final class PlanGate {
  private PlanGate() {}

  /** What the gate says. */
  sealed interface Outcome<D> permits Wait, Planned {}

  /** Not yet: {@code why}. */
  record Wait<D>(String why) implements Outcome<D> {}

  /**
   * Planned: the job, its model, the planner's choice, and the devices it was chosen among (the
   * usable ones, limited by {@code elastic.max-devices}).
   */
  record Planned<D>(JobConfig job, ModelConfig model, Planner.Choice choice, List<D> usable)
      implements Outcome<D> {}

  /**
   * Plans job file {@code config} (named {@code name}) on {@code usable} devices, which {@code
   * offered} describes to the planner.
   *
   * @throws IOException where the job file is malformed ({@code JobConfigException}, naming the
   *     field) or the model's config.json cannot be read
   * @throws RuntimeException where no plan fits
   */
  static <D> Outcome<D> plan(
      String config, String name, List<D> usable, Function<List<D>, List<Planner.Device>> offered)
      throws IOException {
    JobConfig job = JobConfig.parse(config, Path.of(name));
    if (usable.size() < job.elastic().minDevices()) {
      return new Wait<>(
          "waiting for devices: the job's elastic.min-devices is "
              + job.elastic().minDevices()
              + ", "
              + usable.size()
              + " usable");
    }
    List<D> limited = ScalingPolicy.limit(job.elastic(), usable);
    ModelConfig model = ModelConfig.read(job.model().resolve("config.json"));
    if (!job.parallel().auto() && job.parallel().worldSize() > limited.size()) {
      return new Wait<>(
          "waiting for devices: the job asks for "
              + job.parallel()
              + " ("
              + job.parallel().worldSize()
              + " devices), "
              + limited.size()
              + " registered");
    }
    Planner.Choice choice =
        Planner.plan(Planner.Workload.of(job, model), job.parallel(), offered.apply(limited));
    return new Planned<>(job, model, choice, limited);
  }
}
