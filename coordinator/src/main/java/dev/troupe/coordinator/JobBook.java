package dev.troupe.coordinator;

import dev.troupe.coordinator.JobEvent.JobCancelled;
import dev.troupe.coordinator.JobEvent.JobCompleted;
import dev.troupe.coordinator.JobEvent.JobFailed;
import dev.troupe.coordinator.JobEvent.JobPaused;
import dev.troupe.coordinator.JobEvent.JobResumed;
import dev.troupe.coordinator.JobEvent.JobStarted;
import dev.troupe.coordinator.JobEvent.JobSubmitted;
import dev.troupe.coordinator.JobEvent.StepCommitted;
import dev.troupe.persistence.ClusterMessage;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The coordinator's job queue as a value: pure decisions (a command becomes events, or is refused
 * with a reason) and pure event application. The event-sourced {@link Coordinator} persists what
 * this decides and applies what it persisted, so replaying the journal rebuilds the same book.
 *
 * <p>Policy: one job runs at a time; the others wait in submission order. A paused job keeps its
 * turn (no other job starts until it is resumed or cancelled). When the running or paused job ends,
 * the oldest queued job starts.
 */
public record JobBook(long submitted, List<Job> jobs) implements ClusterMessage {
  public JobBook {
    jobs = List.copyOf(jobs);
  }

  /** No job yet. */
  public static JobBook empty() {
    return new JobBook(0, List.of());
  }

  /** A command the book refuses, with the reason for the person who sent it. */
  public static final class Refused extends Exception {
    Refused(String reason) {
      super(reason);
    }
  }

  public Optional<Job> job(String id) {
    return jobs.stream().filter(j -> j.id().equals(id)).findFirst();
  }

  /** The job that holds the turn: running or paused. */
  public Optional<Job> current() {
    return jobs.stream()
        .filter(j -> j.state() == JobState.RUNNING || j.state() == JobState.PAUSED)
        .findFirst();
  }

  /** Submitting a job: it is queued, and started at once when no job holds the turn. */
  public List<JobEvent> submit(String name, String config, long nowMillis) {
    String id = "job-" + (submitted + 1);
    List<JobEvent> events = new ArrayList<>();
    events.add(new JobSubmitted(id, name, config, nowMillis));
    if (current().isEmpty() && jobs.stream().noneMatch(j -> j.state() == JobState.QUEUED))
      events.add(new JobStarted(id));
    return events;
  }

  /** Pausing the running job. */
  public List<JobEvent> pause(String id) throws Refused {
    Job j = existing(id);
    if (j.state() != JobState.RUNNING) {
      throw new Refused(id + " is " + j.state() + "; only a RUNNING job can be paused");
    }
    return List.of(new JobPaused(id));
  }

  /** Resuming a paused job. */
  public List<JobEvent> resume(String id) throws Refused {
    Job j = existing(id);
    if (j.state() != JobState.PAUSED) {
      throw new Refused(id + " is " + j.state() + "; only a PAUSED job can be resumed");
    }
    return List.of(new JobResumed(id));
  }

  /**
   * A step reported by the run of the job: committed once, for a running job or a paused one (the
   * step in flight when it was paused; its run stops after it with a checkpoint); nothing for a job
   * that was cancelled or has ended.
   */
  public List<JobEvent> stepDone(String id, long step, long total, double loss, double tokensPerS) {
    Job j = job(id).orElse(null);
    boolean holdsTurn =
        j != null && (j.state() == JobState.RUNNING || j.state() == JobState.PAUSED);
    if (!holdsTurn || step <= j.step()) return List.of();
    return List.of(new StepCommitted(id, step, total, loss, tokensPerS));
  }

  /**
   * The running job's run ended on its device: completed or failed (the next queued job starts);
   * nothing where the job no longer runs (it was paused or cancelled meanwhile).
   */
  public List<JobEvent> runEnded(String id, boolean completed, String reason) {
    Job j = job(id).orElse(null);
    if (j == null || j.state() != JobState.RUNNING) return List.of();
    List<JobEvent> events = new ArrayList<>();
    events.add(completed ? new JobCompleted(id) : new JobFailed(id, reason));
    startNext(events);
    return events;
  }

  private void startNext(List<JobEvent> events) {
    jobs.stream()
        .filter(q -> q.state() == JobState.QUEUED)
        .findFirst()
        .ifPresent(next -> events.add(new JobStarted(next.id())));
  }

  /** Cancelling a job that has not ended; the next queued job starts if this one held the turn. */
  public List<JobEvent> cancel(String id, String reason) throws Refused {
    Job j = existing(id);
    if (j.state().ended()) throw new Refused(id + " has already ended (" + j.state() + ")");
    List<JobEvent> events = new ArrayList<>();
    events.add(new JobCancelled(id, reason));
    if (j.state() == JobState.RUNNING || j.state() == JobState.PAUSED) startNext(events);
    return events;
  }

  private Job existing(String id) throws Refused {
    Job j = job(id).orElse(null);
    if (j == null) {
      throw new Refused(
          "unknown job '"
              + id
              + "'"
              + (jobs.isEmpty()
                  ? " (no jobs yet)"
                  : " (known: " + String.join(", ", jobs.stream().map(Job::id).toList()) + ")"));
    }
    return j;
  }

  /** The book after {@code e}. */
  public JobBook apply(JobEvent e) {
    if (e instanceof JobSubmitted s) {
      List<Job> next = new ArrayList<>(jobs);
      next.add(
          new Job(
              s.jobId(),
              s.name(),
              s.config(),
              JobState.QUEUED,
              s.atMillis(),
              "",
              0,
              0,
              Double.NaN,
              Double.NaN));
      return new JobBook(submitted + 1, next);
    }
    if (e instanceof JobEvent.JobReplanned) return this; // history: the queue is as it was
    if (e instanceof StepCommitted c) {
      List<Job> next = new ArrayList<>(jobs.size());
      for (Job j : jobs)
        next.add(
            j.id().equals(c.jobId())
                ? j.withStep(c.step(), c.total(), c.loss(), c.tokensPerS())
                : j);
      return new JobBook(submitted, next);
    }
    JobState state;
    String reason = "";
    switch (e) {
      case JobStarted s -> state = JobState.RUNNING;
      case JobPaused p -> state = JobState.PAUSED;
      case JobResumed r -> state = JobState.RUNNING;
      case JobCancelled c -> {
        state = JobState.CANCELLED;
        reason = c.reason();
      }
      case JobCompleted c -> state = JobState.COMPLETED;
      case JobFailed f -> {
        state = JobState.FAILED;
        reason = f.reason();
      }
      case JobSubmitted s -> throw new AssertionError();
      case StepCommitted s -> throw new AssertionError();
      case JobEvent.JobReplanned r -> throw new AssertionError();
    }
    List<Job> next = new ArrayList<>(jobs.size());
    for (Job j : jobs) next.add(j.id().equals(e.jobId()) ? j.withState(state, reason) : j);
    return new JobBook(submitted, next);
  }
}
