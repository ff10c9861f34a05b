package dev.troupe.coordinator;

import dev.troupe.coordinator.CoordinatorProtocol.Accepted;
import dev.troupe.coordinator.CoordinatorProtocol.Command;
import dev.troupe.coordinator.CoordinatorProtocol.Control;
import dev.troupe.coordinator.CoordinatorProtocol.DeviceReport;
import dev.troupe.coordinator.CoordinatorProtocol.Devices;
import dev.troupe.coordinator.CoordinatorProtocol.Jobs;
import dev.troupe.coordinator.CoordinatorProtocol.ListJobs;
import dev.troupe.coordinator.CoordinatorProtocol.Refused;
import dev.troupe.coordinator.CoordinatorProtocol.Submit;
import dev.troupe.device.DeviceActor;
import dev.troupe.pipeline.dist.Planner;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.job.JobConfigException;
import dev.troupe.pipeline.train.Replan;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.persistence.typed.RecoveryCompleted;
import org.apache.pekko.persistence.typed.javadsl.CommandHandler;
import org.apache.pekko.persistence.typed.javadsl.Effect;
import org.apache.pekko.persistence.typed.javadsl.EventHandler;
import org.apache.pekko.persistence.typed.javadsl.EventSourcedBehavior;
import org.apache.pekko.persistence.typed.javadsl.RetentionCriteria;
import org.apache.pekko.persistence.typed.javadsl.SignalHandler;

/**
 * The coordinator: an event-sourced behavior over the {@link JobBook}. Commands are decided by the
 * book, the resulting events are journaled and then applied; replies go out after the events are
 * stored. Snapshots every {@code snapshotEvery} events keep recovery short on long runs (two are
 * kept).
 *
 * <p>Execution: the coordinator finds the device actors through the receptionist, asks each to
 * describe itself, and plans the running job over the usable ones ({@link Planner}). A 1 × 1 × 1
 * plan runs as a whole job on one device ({@link DeviceActor.RunJob}); larger plans run through a
 * {@link PlanRun}, the driver child actor; {@link RunInFlight} keeps what is out. Every step is
 * journaled ({@code StepCommitted}). Pause and cancel stop the run at the next step boundary (it
 * checkpoints there); resume runs the job again from there. After a restart (or a move of the
 * singleton) the coordinator sends the running job out again.
 *
 * <p>Re-plans: a device that leaves ends the run at once and the job is planned again on the
 * devices left (the state comes back from the copies the devices keep). A node drained with {@code
 * troupe drain} and devices that join and make the plan faster by the job's {@code
 * elastic.min-gain} (with {@code parallel = auto}, no sooner than {@code elastic.cooldown-seconds}
 * after the last plan) end the run at the next step boundary instead. Every re-plan is journaled
 * ({@code JobReplanned}).
 */
public final class Coordinator extends EventSourcedBehavior<Command, JobEvent, JobBook> {
  /** The coordinator's persistence id: one per cluster. */
  public static final PersistenceId ID = PersistenceId.ofUniqueId("troupe-coordinator");

  private final int snapshotEvery;
  private final java.util.function.LongSupplier clock;
  private final ActorRef<DeviceActor.Report> reports;
  private final org.apache.pekko.actor.Address self;
  private final org.apache.pekko.cluster.typed.Cluster cluster;
  private final ActorContext<Command> ctx;
  private final DeviceRoster roster = new DeviceRoster();
  private final RunInFlight run = new RunInFlight();
  private int runs;
  private Replan replan; // why the next run of the running job starts again, if it does
  private Replan recovering; // the re-plan whose first step is awaited
  private String recoveringJob;
  private String lastRecovery = "";
  // a re-plan on purpose (drain, join) waiting for the run to stop at its next step boundary
  private Replan pendingReplan;
  // drains that answer once the run using their node has ended
  private final List<ActorRef<CoordinatorProtocol.Reply>> drainWaiters =
      new java.util.ArrayList<>();

  private Coordinator(
      ActorContext<Command> ctx, int snapshotEvery, java.util.function.LongSupplier clock) {
    // a refused write (another coordinator wrote that sequence number: a stale one that woke up
    // after a failover, or this one if it was the stale one) restarts it from the journal after
    // 3 s: a stale node has shut itself down by then, and a live coordinator reads what the other
    // wrote
    super(
        ID,
        org.apache.pekko.actor.typed.SupervisorStrategy.restartWithBackoff(
            java.time.Duration.ofSeconds(3), java.time.Duration.ofSeconds(30), 0.2));
    this.ctx = ctx;
    this.snapshotEvery = snapshotEvery;
    this.clock = clock;
    this.reports = ctx.messageAdapter(DeviceActor.Report.class, DeviceReport::new);
    this.self = ctx.getSystem().address();
    // the members are shown where the coordinator runs in a cluster (not in one-process train)
    this.cluster =
        isCluster(ctx.getSystem().settings().config().getString("pekko.actor.provider"))
            ? org.apache.pekko.cluster.typed.Cluster.get(ctx.getSystem())
            : null;
    ActorRef<Receptionist.Listing> listings =
        ctx.messageAdapter(
            Receptionist.Listing.class,
            l ->
                new Devices(
                    l.getServiceInstances(DeviceActor.KEY).stream()
                        .sorted(Comparator.comparing(r -> r.path().toString()))
                        .toList()));
    ctx.getSystem().receptionist().tell(Receptionist.subscribe(DeviceActor.KEY, listings));
  }

  private static boolean isCluster(String provider) {
    return provider.equals("cluster") || provider.endsWith(".ClusterActorRefProvider");
  }

  /** The coordinator's behavior; it snapshots every {@code snapshotEvery} events. */
  public static Behavior<Command> create(int snapshotEvery) {
    return Behaviors.setup(ctx -> new Coordinator(ctx, snapshotEvery, System::currentTimeMillis));
  }

  @Override
  public JobBook emptyState() {
    return JobBook.empty();
  }

  @Override
  public RetentionCriteria retentionCriteria() {
    return RetentionCriteria.snapshotEvery(snapshotEvery, 2);
  }

  @Override
  public CommandHandler<Command, JobEvent, JobBook> commandHandler() {
    return newCommandHandlerBuilder()
        .forAnyState()
        .onCommand(Submit.class, this::submit)
        .onCommand(Control.class, this::control)
        .onCommand(ListJobs.class, (book, c) -> Effect().reply(c.replyTo(), jobs(book)))
        .onCommand(Devices.class, this::devices)
        .onCommand(CoordinatorProtocol.Drain.class, this::drain)
        .onCommand(CoordinatorProtocol.RecordReplan.class, (book, r) -> Effect().persist(r.event()))
        .onCommand(
            CoordinatorProtocol.Described.class,
            (book, d) -> {
              roster.described(d.device(), d.description());
              dispatch(book);
              considerGrowth();
              return Effect().none();
            })
        .onCommand(DeviceReport.class, this::report)
        .build();
  }

  @Override
  public SignalHandler<JobBook> signalHandler() {
    return newSignalHandlerBuilder()
        .onSignal(
            RecoveryCompleted.instance(),
            book -> {
              // a job that was running when the coordinator stopped runs again from here
              book.current()
                  .filter(j -> j.state() == JobState.RUNNING && j.step() > 0)
                  .ifPresent(
                      j ->
                          replan =
                              new Replan(
                                  "the coordinator recovered the job from its journal",
                                  "",
                                  runs,
                                  clock.getAsLong(),
                                  -1));
              dispatch(book);
            })
        .build();
  }

  private Effect<JobEvent, JobBook> devices(JobBook book, Devices d) {
    for (ActorRef<DeviceActor.Command> device : roster.listing(d.devices())) {
      ctx.ask(
          DeviceActor.Description.class,
          device,
          java.time.Duration.ofSeconds(10),
          DeviceActor.Describe::new,
          (description, failure) ->
              new CoordinatorProtocol.Described(device, failure == null ? description : null));
    }
    String lost = run.listingChanged(roster, cluster != null);
    // a run on one device whose device is gone: the job is sent again below, from the copies
    if (lost != null) replan = run.lossReplan(lost, runs, clock.getAsLong());
    dispatch(book);
    considerGrowth();
    return Effect().none();
  }

  /**
   * Ends the running job's run at its next step boundary and plans it again, for {@code cause}: a
   * drain or devices that joined. The next run restores the state of the step it stopped at.
   */
  private void rebalance(String cause) {
    if (pendingReplan != null || !run.going()) return;
    ctx.getLog().info("re-planning at the next step boundary: {}", cause);
    pendingReplan = new Replan(cause, run.plan, runs, clock.getAsLong(), 0);
    run.stopAtBoundary();
  }

  /** With {@code parallel = auto}: takes devices that joined into the plan where that pays. */
  private void considerGrowth() {
    if (pendingReplan != null) return;
    String cause = run.growth(roster, clock.getAsLong());
    if (cause != null) rebalance(cause);
  }

  /** Drains a node: its devices leave the plan at the next step boundary and are not used again. */
  private Effect<JobEvent, JobBook> drain(JobBook book, CoordinatorProtocol.Drain d) {
    String node = roster.node(d.node()).orElse(null);
    if (node == null) {
      java.util.SortedSet<String> nodes = roster.nodes();
      return Effect()
          .reply(
              d.replyTo(),
              new Refused(
                  "no node "
                      + d.node().strip()
                      + " with devices (nodes with devices: "
                      + (nodes.isEmpty() ? "none" : String.join(", ", nodes))
                      + ")"));
    }
    roster.drain(node);
    boolean used = run.devices().stream().anyMatch(ref -> roster.on(ref, node));
    if (used) rebalance("node " + node + " drained");
    if (used && d.await()) {
      drainWaiters.add(d.replyTo());
      return Effect().none();
    }
    String what =
        node
            + " drained: "
            + (used
                ? "its devices leave the running plan at the next step boundary"
                : "no running plan uses its devices")
            + "; it can be stopped once it does";
    return Effect().reply(d.replyTo(), new Accepted(what));
  }

  private Effect<JobEvent, JobBook> report(JobBook book, DeviceReport r) {
    return switch (r.report()) {
      case DeviceActor.StepDone s -> {
        // a device that trains a whole job writes the step's outputs once it is journaled; a run
        // this coordinator no longer drives (replaced, or on a node that was frozen) gets nothing
        // journaled
        ActorRef<DeviceActor.Command> device = s.commitTo();
        if (device != null && !s.runId().equals(run.dispatchedRun)) {
          device.tell(new DeviceActor.Committed(s.runId(), s.step(), false));
          yield Effect().none();
        }
        if (recovering != null && s.jobId().equals(recoveringJob)) {
          lastRecovery =
              String.format(
                  java.util.Locale.ROOT,
                  "%s: step %d committed %.1f s after %s",
                  s.jobId(),
                  s.step(),
                  (clock.getAsLong() - recovering.detectedAtMillis()) / 1000.0,
                  recovering.cause());
          recovering = null;
        }
        run.stepReported(clock.getAsLong());
        considerGrowth();
        List<JobEvent> events =
            book.stepDone(s.jobId(), s.step(), s.total(), s.loss(), s.tokensPerS());
        // a run over several devices writes the step's outputs once it is journaled
        ActorRef<PlanRunProtocol.Command> driver = run.driverOf(s.jobId());
        if (events.isEmpty()) {
          // a step journaled already (computed again after a coordinator was lost) is acknowledged
          boolean had =
              book.job(s.jobId())
                  .map(
                      j ->
                          j.step() >= s.step()
                              && (j.state() == JobState.RUNNING || j.state() == JobState.PAUSED))
                  .orElse(false);
          if (driver != null) driver.tell(new PlanRunProtocol.Committed(s.step(), had));
          if (device != null) device.tell(new DeviceActor.Committed(s.runId(), s.step(), had));
          yield Effect().none();
        }
        yield Effect()
            .persist(events)
            .thenRun(
                b -> {
                  if (driver != null) driver.tell(new PlanRunProtocol.Committed(s.step(), true));
                  if (device != null) {
                    device.tell(new DeviceActor.Committed(s.runId(), s.step(), true));
                  }
                });
      }
      case DeviceActor.RunEnded e -> {
        // the end of a run that another one replaced already (the job was resumed, or sent again,
        // while that run was stopping): the new run is the job's now
        if (!e.runId().equals(run.dispatchedRun)) yield Effect().none();
        boolean driven = run.ended(e);
        if (driven && e.outcome() == DeviceActor.Outcome.STOPPED && !e.reason().isEmpty()) {
          ctx.getLog().warn("run of {} stopped: {}; planning again", e.jobId(), e.reason());
          String gone = PlanRunProtocol.lostDevice(e.reason());
          if (gone != null) {
            roster.lose(gone);
            replan = run.lossReplan(e.reason(), runs, clock.getAsLong());
          }
        }
        for (ActorRef<CoordinatorProtocol.Reply> w : drainWaiters) {
          w.tell(new Accepted("the run that used it ended at a step boundary"));
        }
        drainWaiters.clear();
        if (pendingReplan != null) {
          // the run stopped for a drain or a join (or failed first: then that is the cause)
          if (replan == null && e.outcome() == DeviceActor.Outcome.STOPPED) replan = pendingReplan;
          pendingReplan = null;
        }
        if (e.outcome() == DeviceActor.Outcome.STOPPED) {
          dispatch(book); // stopped for a re-plan, or resumed while it was stopping: run it again
          yield Effect().none();
        }
        boolean completed = e.outcome() == DeviceActor.Outcome.COMPLETED;
        List<JobEvent> events = book.runEnded(e.jobId(), completed, e.reason());
        yield events.isEmpty() ? Effect().none() : Effect().persist(events).thenRun(this::dispatch);
      }
    };
  }

  private Effect<JobEvent, JobBook> persist(List<JobEvent> events) {
    return events.isEmpty() ? Effect().none() : Effect().persist(events);
  }

  private Jobs jobs(JobBook book) {
    List<String> members = new java.util.ArrayList<>();
    if (cluster != null) {
      for (org.apache.pekko.cluster.Member m : cluster.state().getMembers()) {
        members.add(m.address() + " " + m.status() + " " + new java.util.TreeSet<>(m.getRoles()));
      }
    }
    String running = run.job();
    return new Jobs(
        book.jobs(),
        members,
        roster.listed().stream().map(d -> d.path().toStringWithAddress(self)).toList(),
        running == null ? "" : running,
        running == null ? "" : run.where(self),
        running == null ? "" : run.plan,
        run.planExplanation,
        lastRecovery);
  }

  /**
   * Plans the running job over the described devices and starts it: on one device as a whole job
   * ({@link DeviceActor.RunJob}), on several through a {@link PlanRun}. Nothing while a run of it
   * is going or ending, or while devices are still being described.
   */
  private void dispatch(JobBook book) {
    Job running = book.current().filter(j -> j.state() == JobState.RUNNING).orElse(null);
    if (running == null || running.id().equals(run.dispatchedJob) || run.planRun != null) return;
    List<ActorRef<DeviceActor.Command>> usable = roster.usable();
    if (usable.isEmpty()) {
      run.planExplanation =
          "waiting for devices: none "
              + (roster.listed().isEmpty() ? "registered" : "usable (lost or on drained nodes)");
      return;
    }
    if (!roster.allDescribed(usable)) return; // their descriptions are on the way
    PlanGate.Planned<ActorRef<DeviceActor.Command>> planned;
    try {
      switch (PlanGate.plan(running.config(), running.name(), usable, roster::offered)) {
        case PlanGate.Wait<ActorRef<DeviceActor.Command>> w -> {
          run.planExplanation = w.why();
          return;
        }
        case PlanGate.Planned<ActorRef<DeviceActor.Command>> p -> planned = p;
      }
    } catch (java.io.IOException | RuntimeException e) {
      run.planExplanation = "";
      String reason = "cannot plan: " + firstLine(e);
      ctx.getSelf()
          .tell(
              new DeviceReport(
                  new DeviceActor.RunEnded(
                      running.id(), DeviceActor.Outcome.FAILED, reason, "unplanned")));
      run.unplanned(running.id());
      return;
    }
    JobConfig job = planned.job();
    Planner.Choice choice = planned.choice();
    usable = planned.usable();
    run.planned(choice, job, planned.model(), clock.getAsLong());
    List<ActorRef<DeviceActor.Command>> chosen = roster.actorsOf(choice.devices(), usable);
    Replan why = replan;
    replan = null;
    if (why != null) {
      ctx.getSelf()
          .tell(
              new CoordinatorProtocol.RecordReplan(
                  new JobEvent.JobReplanned(
                      running.id(),
                      why.cause(),
                      why.generation(),
                      why.oldPlan(),
                      run.plan,
                      clock.getAsLong())));
      recovering = why;
      recoveringJob = running.id();
    }
    String runId = running.id() + "-run" + (++runs) + "-" + System.currentTimeMillis();
    if (choice.plan().worldSize() == 1) {
      ActorRef<DeviceActor.Command> device = chosen.get(0);
      // in a cluster the device keeps copies of the state on a buddy on another node after every
      // step, and a run of a job with committed steps starts from such copies where they are left
      boolean copies = cluster != null;
      run.sent(running.id(), runId, device, copies ? Buddies.of(device, usable) : List.of());
      device.tell(
          new DeviceActor.RunJob(
              runId,
              running.id(),
              running.config(),
              reports,
              running.step(),
              copies ? usable : List.of(),
              run.runBuddies,
              copies,
              run.plan,
              why));
      return;
    }
    ActorRef<PlanRunProtocol.Command> driver =
        ctx.spawn(
            PlanRun.create(
                new PlanRun.Order(
                    runId,
                    running.id(),
                    running.config(),
                    job,
                    choice.plan(),
                    chosen,
                    reports,
                    usable,
                    running.step(),
                    why)),
            "plan-run-" + runs);
    run.driven(running.id(), runId, driver, chosen, Buddies.ofPlan(choice.plan(), chosen, usable));
  }

  private Effect<JobEvent, JobBook> submit(JobBook book, Submit c) {
    try {
      // a job the nodes could not run is refused now, with the key or value at fault
      JobConfig.parse(c.config(), Path.of(c.name()));
    } catch (JobConfigException | RuntimeException e) {
      return Effect().reply(c.replyTo(), new Refused(firstLine(e)));
    }
    List<JobEvent> events = book.submit(c.name(), c.config(), clock.getAsLong());
    String id = events.get(0).jobId();
    return Effect()
        .persist(events)
        .thenRun(this::dispatch)
        .thenReply(c.replyTo(), b -> new Accepted(id));
  }

  private Effect<JobEvent, JobBook> control(JobBook book, Control c) {
    List<JobEvent> events;
    try {
      events =
          switch (c.action()) {
            case PAUSE -> book.pause(c.jobId());
            case RESUME -> book.resume(c.jobId());
            case CANCEL -> book.cancel(c.jobId(), "cancelled on request");
          };
    } catch (JobBook.Refused e) {
      return Effect().reply(c.replyTo(), new Refused(e.getMessage()));
    }
    return Effect()
        .persist(events)
        .thenRun(
            b -> {
              if (c.action() != CoordinatorProtocol.Action.RESUME) run.stop(c.jobId());
              dispatch(b);
            })
        .thenReply(c.replyTo(), b -> new Accepted(c.jobId()));
  }

  private static String firstLine(Throwable e) {
    String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    int nl = m.indexOf('\n');
    return nl < 0 ? m : m.substring(0, nl);
  }

  @Override
  public EventHandler<JobBook, JobEvent> eventHandler() {
    return newEventHandlerBuilder().forAnyState().onAnyEvent(JobBook::apply);
  }
}
