package dev.troupe.coordinator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.troupe.coordinator.CoordinatorProtocol.Accepted;
import dev.troupe.coordinator.CoordinatorProtocol.Action;
import dev.troupe.coordinator.CoordinatorProtocol.Control;
import dev.troupe.coordinator.CoordinatorProtocol.Jobs;
import dev.troupe.coordinator.CoordinatorProtocol.ListJobs;
import dev.troupe.coordinator.CoordinatorProtocol.Refused;
import dev.troupe.coordinator.CoordinatorProtocol.Reply;
import dev.troupe.coordinator.CoordinatorProtocol.Submit;
import dev.troupe.persistence.JournalConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.persistence.jdbc.testkit.javadsl.SchemaUtils;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The coordinator on its real journal (pekko-persistence-jdbc on an H2 file, events and snapshots
 * through the Kryo serializer): jobs submitted, controlled and refused; then a new actor system on
 * the same files recovers the same queue, from a snapshot plus the events after it.
 */
class CoordinatorJournalTest {
  @TempDir Path dir;

  private static final String JOB =
      """
      model = "/models/tiny"
      data { train = "train.jsonl" }
      steps = 10
      output = "out"
      """;

  private org.apache.pekko.actor.ActorSystem start() throws Exception {
    var config =
        JournalConfig.h2(dir)
            .withFallback(ConfigFactory.parseString("pekko.loglevel = WARNING"))
            .withFallback(ConfigFactory.load());
    var system = org.apache.pekko.actor.ActorSystem.create("coordinator-test", config);
    SchemaUtils.createIfNotExists(system).toCompletableFuture().get(60, TimeUnit.SECONDS);
    return system;
  }

  private static Reply ask(
      org.apache.pekko.actor.ActorSystem system,
      ActorRef<CoordinatorProtocol.Command> c,
      Function<ActorRef<Reply>, CoordinatorProtocol.Command> msg)
      throws Exception {
    ActorSystem<?> typed = Adapter.toTyped(system);
    return AskPattern.ask(c, msg::apply, Duration.ofSeconds(30), typed.scheduler())
        .toCompletableFuture()
        .get(30, TimeUnit.SECONDS);
  }

  @Test
  void jobsSurviveARestartOfTheCoordinator() throws Exception {
    List<Job> before;
    var system = start();
    try {
      var c = Adapter.spawn(system, Coordinator.create(4), "coordinator");
      for (int i = 1; i <= 3; i++) {
        String name = "job" + i + ".conf";
        Reply r = ask(system, c, to -> new Submit(name, JOB, to));
        assertEquals(new Accepted("job-" + i), r);
      }
      assertEquals(
          new Accepted("job-1"), ask(system, c, to -> new Control("job-1", Action.PAUSE, to)));
      assertEquals(
          new Accepted("job-1"), ask(system, c, to -> new Control("job-1", Action.CANCEL, to)));
      Reply bad =
          ask(
              system,
              c,
              to -> new Submit("bad.conf", JOB.replace("steps = 10", "steps = ten"), to));
      assertInstanceOf(Refused.class, bad);
      assertTrue(((Refused) bad).reason().contains("steps"), bad.toString());
      Reply unknown = ask(system, c, to -> new Control("job-9", Action.RESUME, to));
      assertEquals(new Refused("unknown job 'job-9' (known: job-1, job-2, job-3)"), unknown);
      before = ((Jobs) ask(system, c, ListJobs::new)).jobs();
      assertEquals(
          List.of(JobState.CANCELLED, JobState.RUNNING, JobState.QUEUED),
          before.stream().map(Job::state).toList());
      assertEquals(JOB, before.get(1).config());
    } finally {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }
    // 3 submits + 1 start, pause, cancel + next start = 7 events: a snapshot was taken at 4
    assertTrue(Files.exists(dir.resolve("journal.mv.db")));
    try (var conn =
            DriverManager.getConnection("jdbc:h2:file:" + dir.resolve("journal"), "sa", "");
        ResultSet rs =
            conn.createStatement()
                .executeQuery(
                    "select count(*), (select count(*) from \"snapshot\") from"
                        + " \"event_journal\"")) {
      rs.next();
      assertEquals(7, rs.getInt(1), "events journaled");
      assertTrue(rs.getInt(2) >= 1, "a snapshot was stored");
    }

    var again = start();
    try {
      var c = Adapter.spawn(again, Coordinator.create(4), "coordinator");
      List<Job> after = ((Jobs) ask(again, c, ListJobs::new)).jobs();
      assertEquals(before, after);
      assertEquals(new Accepted("job-4"), ask(again, c, to -> new Submit("job4.conf", JOB, to)));
    } finally {
      again.terminate();
      again.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }
  }
}
