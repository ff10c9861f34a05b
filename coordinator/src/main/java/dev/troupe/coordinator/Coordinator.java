package dev.troupe.coordinator;

import dev.troupe.coordinator.CoordinatorProtocol.Accepted;
import dev.troupe.coordinator.CoordinatorProtocol.Command;
import dev.troupe.coordinator.CoordinatorProtocol.Control;
import dev.troupe.coordinator.CoordinatorProtocol.Jobs;
import dev.troupe.coordinator.CoordinatorProtocol.ListJobs;
import dev.troupe.coordinator.CoordinatorProtocol.Refused;
import dev.troupe.coordinator.CoordinatorProtocol.Submit;
import dev.troupe.pipeline.job.JobConfig;
import dev.troupe.pipeline.job.JobConfigException;
import java.nio.file.Path;
import java.util.List;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.persistence.typed.javadsl.CommandHandler;
import org.apache.pekko.persistence.typed.javadsl.Effect;
import org.apache.pekko.persistence.typed.javadsl.EventHandler;
import org.apache.pekko.persistence.typed.javadsl.EventSourcedBehavior;
import org.apache.pekko.persistence.typed.javadsl.RetentionCriteria;

/**
 * The coordinator: an event-sourced behavior over the {@link JobBook}. Commands are decided by the
 * book, the resulting events are journaled and then applied; replies go out after the events are
 * stored. Snapshots every {@code snapshotEvery} events keep recovery short on long runs (two are
 * kept).
 *
 * <p>Built so far: the job queue and its journal. Planning, executing jobs on device actors, the
 * cluster singleton, the receptionist and the cluster client are not built yet, so a RUNNING job is
 * not trained by anyone yet.
 */
public final class Coordinator extends EventSourcedBehavior<Command, JobEvent, JobBook> {
  /** The coordinator's persistence id: one per cluster. */
  public static final PersistenceId ID = PersistenceId.ofUniqueId("troupe-coordinator");

  private final int snapshotEvery;
  private final java.util.function.LongSupplier clock;

  private Coordinator(int snapshotEvery, java.util.function.LongSupplier clock) {
    super(ID);
    this.snapshotEvery = snapshotEvery;
    this.clock = clock;
  }

  /** The coordinator's behavior; it snapshots every {@code snapshotEvery} events. */
  public static Behavior<Command> create(int snapshotEvery) {
    return new Coordinator(snapshotEvery, System::currentTimeMillis);
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
        .onCommand(ListJobs.class, (book, c) -> Effect().reply(c.replyTo(), new Jobs(book.jobs())))
        .build();
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
    return Effect().persist(events).thenReply(c.replyTo(), b -> new Accepted(id));
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
    return Effect().persist(events).thenReply(c.replyTo(), b -> new Accepted(c.jobId()));
  }

  private static String firstLine(Exception e) {
    String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    int nl = m.indexOf('\n');
    return nl < 0 ? m : m.substring(0, nl);
  }

  @Override
  public EventHandler<JobBook, JobEvent> eventHandler() {
    return newEventHandlerBuilder().forAnyState().onAnyEvent(JobBook::apply);
  }
}
