package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.device.DeviceActor;
import dev.troupe.device.DeviceInfo;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A device that trains a whole job writes a step's metrics line and checkpoint only once the
 * coordinator has journaled the step ({@link DeviceActor.Committed}), and a step that is not
 * committed is never written: so a run no coordinator owns any more (its coordinator was lost, or
 * its node was frozen and the job went on elsewhere) cannot write steps the journal does not have,
 * and it cannot run ahead of the journal either. The coordinator is played by the test.
 */
class CommitFenceTest {
  @TempDir Path dir;
  private org.apache.pekko.actor.ActorSystem system;

  @BeforeEach
  void start() {
    system = org.apache.pekko.actor.ActorSystem.create("commit-fence-test");
  }

  @AfterEach
  void stop() throws Exception {
    system.terminate();
    system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
  }

  @Test
  void aStepIsWrittenOnlyOnceCommittedAndNeverWhenRefused() throws Exception {
    TrainingJobs.writeModelAndData(dir);
    Path job = TrainingJobs.job(dir, "job", "steps = 4\ncheckpoint { every = 1 }");
    BlockingQueue<DeviceActor.Report> reports = new LinkedBlockingQueue<>();
    ActorRef<DeviceActor.Report> coordinator =
        Adapter.spawn(
            system,
            Behaviors.receive(DeviceActor.Report.class)
                .onAnyMessage(
                    r -> {
                      reports.add(r);
                      return Behaviors.same();
                    })
                .build(),
            "coordinator");
    ByteArrayOutputStream log = new ByteArrayOutputStream();
    ActorRef<DeviceActor.Command> device =
        Adapter.spawn(
            system,
            DeviceActor.create(
                new DeviceInfo("cpu:0", DeviceInfo.Kind.CPU, 1L << 30, 1),
                "local",
                new PrintStream(log, true, StandardCharsets.UTF_8),
                false),
            "device");
    device.tell(
        new DeviceActor.RunJob(
            "run-1",
            "job-1",
            Files.readString(job),
            coordinator,
            0,
            List.of(),
            List.of(),
            false,
            "pp=1 tp=1 dp=1",
            null));
    Path metrics = dir.resolve("job/metrics.jsonl");
    Path checkpoints = dir.resolve("job/checkpoints");

    DeviceActor.StepDone first = stepDone(reports, 1);
    assertEquals("run-1", first.runId());
    assertNotNull(first.commitTo(), "the device waits for the commit");
    // the step is computed and reported; nothing of it is written before the commit
    assertEquals(0, TrainingJobs.lastStep(metrics), "no line before the commit");
    assertFalse(Files.exists(checkpoints.resolve("step-00000001")), "no checkpoint before it");

    // an answer for another run (an older one, say) is not this run's commit
    device.tell(new DeviceActor.Committed("run-0", 1, true));
    device.tell(new DeviceActor.Committed("run-1", 1, true));
    stepDone(reports, 2);
    assertEquals(1, TrainingJobs.lastStep(metrics), "step 1 written once committed");
    assertTrue(Files.isDirectory(checkpoints.resolve("step-00000001")));
    assertFalse(Files.exists(checkpoints.resolve("step-00000002")));

    // step 2 is refused (the job is no longer this run's): the run stops and writes nothing of it
    device.tell(new DeviceActor.Committed("run-1", 2, false));
    DeviceActor.Report end = reports.poll(120, TimeUnit.SECONDS);
    DeviceActor.RunEnded ended = assertInstanceOf(DeviceActor.RunEnded.class, end);
    assertEquals(DeviceActor.Outcome.STOPPED, ended.outcome(), ended.toString());
    assertEquals(1, TrainingJobs.lastStep(metrics), "step 2 never written");
    assertFalse(Files.exists(checkpoints.resolve("step-00000002")), "nor checkpointed");
    assertFalse(Files.exists(dir.resolve("job/adapter")), "no adapter from a stopped run");
    assertTrue(
        log.toString(StandardCharsets.UTF_8).contains("step 2 was not committed"),
        log.toString(StandardCharsets.UTF_8));
  }

  /** The next report, which must be step {@code step} done. */
  private static DeviceActor.StepDone stepDone(BlockingQueue<DeviceActor.Report> reports, long step)
      throws InterruptedException {
    DeviceActor.Report r = reports.poll(120, TimeUnit.SECONDS);
    DeviceActor.StepDone s = assertInstanceOf(DeviceActor.StepDone.class, r, "report: " + r);
    assertEquals(step, s.step(), s.toString());
    return s;
  }
}
