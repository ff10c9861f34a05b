package dev.troupe.coordinator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.troupe.device.DeviceActor;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** What the coordinator has out ({@link RunInFlight}): losses, stops and ends, with real actors. */
class RunInFlightTest {
  private static ActorSystem<Void> system;
  private static int actors;

  @BeforeAll
  static void start() {
    system =
        ActorSystem.create(
            Behaviors.empty(),
            "run-in-flight",
            ConfigFactory.parseString("pekko.loglevel = WARNING")
                .withFallback(ConfigFactory.load()));
  }

  @AfterAll
  static void stop() {
    system.terminate();
  }

  /** An actor that puts every message it gets into {@code inbox}. */
  private static <T> ActorRef<T> recorder(Class<T> type, BlockingQueue<Object> inbox) {
    Behavior<T> b =
        Behaviors.receive(type)
            .onAnyMessage(
                m -> {
                  inbox.add(m);
                  return Behaviors.same();
                })
            .build();
    return system.systemActorOf(b, "recorder-" + actors++, Props.empty());
  }

  private static Object next(BlockingQueue<Object> inbox) throws InterruptedException {
    Object m = inbox.poll(10, TimeUnit.SECONDS);
    if (m == null) throw new AssertionError("no message came");
    return m;
  }

  @Test
  void aOneDeviceRunWhoseDeviceIsNoLongerListedIsLostAndForgotten() {
    BlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    ActorRef<DeviceActor.Command> d0 = recorder(DeviceActor.Command.class, inbox);
    ActorRef<DeviceActor.Command> d1 = recorder(DeviceActor.Command.class, inbox);
    DeviceRoster roster = new DeviceRoster();
    roster.listing(List.of(d0, d1));
    RunInFlight run = new RunInFlight();
    run.sent("job-1", "job-1-run1", d0, List.of());
    assertTrue(run.going());
    assertEquals(List.of(d0), run.devices());
    assertNull(run.listingChanged(roster, false), "its device is still listed");

    roster.listing(List.of(d1));
    String lost = run.listingChanged(roster, false);
    assertEquals("device " + d0.path() + " left the cluster", lost);
    assertEquals(d0.path().toString(), PlanRunProtocol.lostDevice(lost), "the reason names it");
    assertFalse(run.going());
    assertNull(run.job(), "the job is to be sent again");
    assertEquals(List.of(), run.devices());
  }

  @Test
  void aRunOverSeveralDevicesEndsWhenADeviceOrABuddyLeaves() throws Exception {
    BlockingQueue<Object> driverInbox = new LinkedBlockingQueue<>();
    BlockingQueue<Object> devices = new LinkedBlockingQueue<>();
    ActorRef<DeviceActor.Command> r0 = recorder(DeviceActor.Command.class, devices);
    ActorRef<DeviceActor.Command> r1 = recorder(DeviceActor.Command.class, devices);
    ActorRef<DeviceActor.Command> buddy = recorder(DeviceActor.Command.class, devices);
    DeviceRoster roster = new DeviceRoster();
    roster.listing(List.of(r0, r1, buddy));
    RunInFlight run = new RunInFlight();
    ActorRef<PlanRunProtocol.Command> driver = recorder(PlanRunProtocol.Command.class, driverInbox);
    run.driven("job-2", "job-2-run1", driver, List.of(r0, r1), List.of(buddy));
    assertEquals(List.of(r0, r1), run.devices());

    // a buddy leaves: the driver is told, and the buddies are dropped
    roster.listing(List.of(r0, r1));
    assertNull(run.listingChanged(roster, true), "only a one-device run is lost here");
    assertEquals(new PlanRunProtocol.DeviceGone(buddy.path().toString()), next(driverInbox));
    assertEquals(List.of(), run.runBuddies);

    // a rank's device leaves: the driver is told; the run stays known until its end comes
    roster.listing(List.of(r0));
    run.listingChanged(roster, true);
    assertEquals(new PlanRunProtocol.DeviceGone(r1.path().toString()), next(driverInbox));
    assertTrue(run.going());
    assertEquals("job-2", run.job());
    assertEquals(driver, run.driverOf("job-2"));
    assertNull(run.driverOf("job-1"));

    String reason = PlanRunProtocol.deviceLeft(r1.path());
    var ended =
        new DeviceActor.RunEnded("job-2", DeviceActor.Outcome.STOPPED, reason, "job-2-run1");
    assertTrue(run.ended(ended), "the end of a run over several devices");
    assertFalse(run.going());
    assertNull(run.job());
  }

  @Test
  void stopsGoToWhatRunsAndAJobThatWasNeverSentIsForgotten() throws Exception {
    BlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    ActorRef<DeviceActor.Command> d0 = recorder(DeviceActor.Command.class, inbox);
    RunInFlight run = new RunInFlight();
    run.sent("job-3", "job-3-run1", d0, List.of());
    run.stop("job-4"); // another job: nothing
    run.stopAtBoundary();
    assertEquals(new DeviceActor.StopJob("job-3"), next(inbox));
    run.stop("job-3");
    assertEquals(new DeviceActor.StopJob("job-3"), next(inbox));
    var ended = new DeviceActor.RunEnded("job-3", DeviceActor.Outcome.STOPPED, "", "r");
    assertFalse(run.ended(ended), "a run on one device");
    assertFalse(run.going());

    // a job that could not be planned has no device: stopping it forgets it at once
    run.unplanned("job-5");
    assertEquals("job-5", run.job());
    run.stop("job-5");
    assertNull(run.job());
  }
}
