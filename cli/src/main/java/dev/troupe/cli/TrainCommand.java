package dev.troupe.cli;

import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigRenderOptions;
import dev.troupe.coordinator.Coordinator;
import dev.troupe.coordinator.CoordinatorProtocol;
import dev.troupe.coordinator.Job;
import dev.troupe.coordinator.JobState;
import dev.troupe.device.DeviceActor;
import dev.troupe.device.DeviceInfo;
import dev.troupe.device.DeviceSpec;
import dev.troupe.device.Devices;
import dev.troupe.persistence.JournalConfig;
import dev.troupe.pipeline.job.JobConfig;
import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.persistence.jdbc.testkit.javadsl.SchemaUtils;

/**
 * {@code troupe train JOB.conf}: the job on the actor path in this process — an embedded
 * coordinator (its journal in {@code output/coordinator/}) and one CPU device actor, which trains
 * the job with its progress on stdout; a job with a fixed {@code parallel} plan of n ranks gets n
 * CPU devices sharing the threads, and a line per step. Started again after a crash, the
 * coordinator recovers the unfinished job from its journal and the device resumes it from the
 * newest valid checkpoint.
 */
final class TrainCommand implements Main.Command {
  private static final Duration ASK = Duration.ofSeconds(30);

  @Override
  public int run(List<String> argv, PrintStream out) throws Exception {
    if (argv.size() != 1 || argv.get(0).startsWith("--")) {
      throw new UsageException("train: usage: troupe train JOB.conf");
    }
    Path file = Path.of(argv.get(0));
    JobConfig job = JobConfig.load(file);
    String text = render(file);
    int threads = job.threads() > 0 ? job.threads() : Runtime.getRuntime().availableProcessors();
    // a fixed plan over several devices gets that many CPU devices here, sharing the threads
    int ranks = job.parallel().auto() ? 1 : job.parallel().worldSize();
    List<DeviceInfo> devices =
        Devices.discover(DeviceSpec.cpu(ranks), Math.max(1, threads / ranks));
    var config =
        JournalConfig.h2(job.output().resolve("coordinator"))
            .withFallback(ConfigFactory.parseString("pekko.loglevel = WARNING"))
            .withFallback(ConfigFactory.load());
    ActorSystem system = ActorSystem.create("troupe-train", config);
    try {
      SchemaUtils.createIfNotExists(system).toCompletableFuture().get(60, TimeUnit.SECONDS);
      boolean terminal = System.console() != null && out == System.out;
      for (int i = 0; i < devices.size(); i++) {
        Adapter.spawn(
            system, DeviceActor.create(devices.get(i), "local", out, terminal), "device-cpu-" + i);
      }
      ActorRef<CoordinatorProtocol.Command> coordinator =
          Adapter.spawn(system, Coordinator.create(100), "coordinator");
      String id = jobToFollow(system, coordinator, file.getFileName().toString(), text, out);
      long shown = -1;
      while (true) {
        Job j =
            jobs(system, coordinator).stream()
                .filter(x -> x.id().equals(id))
                .findFirst()
                .orElseThrow();
        if (ranks > 1 && j.step() != shown) { // one device shows its own progress
          out.println(ClientCommand.line(j));
          shown = j.step();
        }
        if (j.state().ended()) {
          if (j.state() == JobState.COMPLETED) return 0;
          throw new IllegalStateException(
              "the job " + j.state().name().toLowerCase(java.util.Locale.ROOT) + ": " + j.reason());
        }
        Thread.sleep(200);
      }
    } finally {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(60, TimeUnit.SECONDS);
    }
  }

  /**
   * The job file as self-contained HOCON text: includes and substitutions resolved (paths in it are
   * still resolved against the working folder, as {@link JobConfig#load} does).
   */
  static String render(Path file) {
    return ConfigFactory.parseFile(file.toFile())
        .resolve()
        .root()
        .render(ConfigRenderOptions.concise().setFormatted(true));
  }

  /**
   * The job this run follows: the unfinished one the journal holds for the same job text (after a
   * crash), resumed if it was paused; otherwise a new submission (an unfinished job for another
   * text is cancelled first, as superseded).
   */
  private static String jobToFollow(
      ActorSystem system,
      ActorRef<CoordinatorProtocol.Command> coordinator,
      String name,
      String text,
      PrintStream out)
      throws Exception {
    Optional<Job> open =
        jobs(system, coordinator).stream().filter(j -> !j.state().ended()).findFirst();
    if (open.isPresent() && open.get().config().equals(text)) {
      Job j = open.get();
      out.println("continuing " + j.id() + " from the coordinator's journal (" + j.state() + ")");
      if (j.state() == JobState.PAUSED) {
        control(system, coordinator, j.id(), CoordinatorProtocol.Action.RESUME);
      }
      return j.id();
    }
    if (open.isPresent()) {
      control(system, coordinator, open.get().id(), CoordinatorProtocol.Action.CANCEL);
    }
    return expectAccepted(
        ask(system, coordinator, to -> new CoordinatorProtocol.Submit(name, text, to)));
  }

  private static void control(
      ActorSystem system,
      ActorRef<CoordinatorProtocol.Command> coordinator,
      String id,
      CoordinatorProtocol.Action action)
      throws Exception {
    expectAccepted(ask(system, coordinator, to -> new CoordinatorProtocol.Control(id, action, to)));
  }

  private static String expectAccepted(CoordinatorProtocol.Reply r) {
    if (r instanceof CoordinatorProtocol.Refused refused) {
      throw new IllegalStateException(refused.reason());
    }
    return ((CoordinatorProtocol.Accepted) r).jobId();
  }

  private static List<Job> jobs(
      ActorSystem system, ActorRef<CoordinatorProtocol.Command> coordinator) throws Exception {
    return ((CoordinatorProtocol.Jobs) ask(system, coordinator, CoordinatorProtocol.ListJobs::new))
        .jobs();
  }

  private static CoordinatorProtocol.Reply ask(
      ActorSystem system,
      ActorRef<CoordinatorProtocol.Command> coordinator,
      Function<ActorRef<CoordinatorProtocol.Reply>, CoordinatorProtocol.Command> msg)
      throws Exception {
    return AskPattern.ask(coordinator, msg::apply, ASK, Adapter.toTyped(system).scheduler())
        .toCompletableFuture()
        .get(ASK.toSeconds() + 5, TimeUnit.SECONDS);
  }
}
