package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.typesafe.config.ConfigFactory;
import dev.troupe.coordinator.Coordinator;
import dev.troupe.coordinator.CoordinatorProtocol;
import dev.troupe.coordinator.CoordinatorProtocol.Accepted;
import dev.troupe.coordinator.CoordinatorProtocol.Action;
import dev.troupe.coordinator.CoordinatorProtocol.Control;
import dev.troupe.coordinator.CoordinatorProtocol.Jobs;
import dev.troupe.coordinator.CoordinatorProtocol.ListJobs;
import dev.troupe.coordinator.CoordinatorProtocol.Reply;
import dev.troupe.coordinator.CoordinatorProtocol.Submit;
import dev.troupe.coordinator.Job;
import dev.troupe.coordinator.JobState;
import dev.troupe.device.DeviceActor;
import dev.troupe.device.DeviceInfo;
import dev.troupe.persistence.JournalConfig;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.train.Trainer;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.Predicate;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.persistence.jdbc.testkit.javadsl.SchemaUtils;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Jobs run through the actors: the coordinator (on its H2 journal) sends the running job to a CPU
 * device actor, which trains it and reports every step. A job paused and resumed mid-run commits
 * every step exactly once and has the per-step losses of the same job trained in one go; the next
 * job waits its turn and completes; a cancelled job stops.
 */
class CoordinatorExecutionTest {
  @TempDir Path dir;

  private org.apache.pekko.actor.ActorSystem system;
  private ActorRef<CoordinatorProtocol.Command> coordinator;

  private Reply ask(Function<ActorRef<Reply>, CoordinatorProtocol.Command> msg) throws Exception {
    return AskPattern.ask(
            coordinator, msg::apply, Duration.ofSeconds(30), Adapter.toTyped(system).scheduler())
        .toCompletableFuture()
        .get(30, TimeUnit.SECONDS);
  }

  private Job job(String id) throws Exception {
    return ((Jobs) ask(ListJobs::new))
        .jobs().stream().filter(j -> j.id().equals(id)).findFirst().orElseThrow();
  }

  /** Polls until {@code job} satisfies {@code p}; 180 s is a deadline against hanging only. */
  private Job await(String id, Predicate<Job> p, String what) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
    while (true) {
      Job j = job(id);
      if (p.test(j)) return j;
      if (System.nanoTime() > deadline) fail(id + " never " + what + ": " + j);
      Thread.sleep(50);
    }
  }

  private static List<Double> losses(Path metrics) throws Exception {
    List<JsonNode> steps = TrainingJobs.steps(metrics);
    for (int i = 0; i < steps.size(); i++) {
      assertEquals(i + 1, steps.get(i).get("step").asInt(), "steps in order, each once");
    }
    return steps.stream().map(n -> n.get("loss").asDouble()).toList();
  }

  @Test
  void jobsRunOnADeviceActorPauseResumeAndCancel() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    String extra = "steps = 60\ncheckpoint { every = 10, keep = 2 }";
    Path a = TrainingJobs.job(dir, "a", extra);
    Path b = TrainingJobs.job(dir, "b", "steps = 6");
    Path c = TrainingJobs.job(dir, "c", "steps = 100000");
    String aText = Files.readString(a);
    String bText = Files.readString(b);
    String cText = Files.readString(c);
    var config =
        JournalConfig.h2(dir.resolve("journal"))
            .withFallback(ConfigFactory.parseString("pekko.loglevel = WARNING"))
            .withFallback(ConfigFactory.load());
    system = org.apache.pekko.actor.ActorSystem.create("execution-test", config);
    try {
      SchemaUtils.createIfNotExists(system).toCompletableFuture().get(60, TimeUnit.SECONDS);
      Adapter.spawn(
          system,
          DeviceActor.create(new DeviceInfo("cpu:0", DeviceInfo.Kind.CPU, 1L << 30, 1), "local"),
          "device-cpu-0");
      coordinator = Adapter.spawn(system, Coordinator.create(50), "coordinator");

      assertEquals(new Accepted("job-1"), ask(to -> new Submit("a.conf", aText, to)));
      assertEquals(new Accepted("job-2"), ask(to -> new Submit("b.conf", bText, to)));
      await("job-1", j -> j.step() >= 3, "reached step 3");
      assertEquals(new Accepted("job-1"), ask(to -> new Control("job-1", Action.PAUSE, to)));
      assertEquals(JobState.QUEUED, job("job-2").state(), "a paused job keeps its turn");
      assertEquals(new Accepted("job-1"), ask(to -> new Control("job-1", Action.RESUME, to)));
      Job done = await("job-1", j -> j.state().ended(), "ended");
      assertEquals(JobState.COMPLETED, done.state(), done.reason());
      assertEquals(60, done.step());
      Job second = await("job-2", j -> j.state().ended(), "ended");
      assertEquals(JobState.COMPLETED, second.state(), second.reason());
      assertEquals(6, second.step());

      assertEquals(new Accepted("job-3"), ask(to -> new Submit("c.conf", cText, to)));
      await("job-3", j -> j.step() >= 1, "started training");
      assertEquals(new Accepted("job-3"), ask(to -> new Control("job-3", Action.CANCEL, to)));
      Job cancelled = job("job-3");
      assertEquals(JobState.CANCELLED, cancelled.state());
      assertTrue(cancelled.step() < 100000);
    } finally {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(60, TimeUnit.SECONDS);
    }

    // the paused-and-resumed run against the same job trained in one go
    List<Double> viaActors = losses(dir.resolve("a/metrics.jsonl"));
    assertEquals(60, viaActors.size());
    Path direct = TrainingJobs.job(dir, "a-direct", extra);
    new Trainer(JobConfig.load(direct), new PrintStream(new ByteArrayOutputStream()), false).run();
    List<Double> inOneGo = losses(dir.resolve("a-direct/metrics.jsonl"));
    double worst = 0;
    for (int i = 0; i < 60; i++) {
      worst = Math.max(worst, Math.abs(viaActors.get(i) / inOneGo.get(i) - 1));
    }
    System.out.printf(
        "paused and resumed through the actors vs in one go: 60 steps, worst relative loss"
            + " difference %.2e%n",
        worst);
    assertTrue(worst <= 1e-6, "losses differ by " + worst);
    assertTrue(Files.isDirectory(dir.resolve("a/adapter")), "the adapter was written");
    String log = Files.readString(dir.resolve("a/train.log"));
    assertTrue(log.contains("on request") && log.contains("resuming from"), "stopped and resumed");
  }
}
