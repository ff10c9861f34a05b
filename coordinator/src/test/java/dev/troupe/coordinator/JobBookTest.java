package dev.troupe.coordinator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.coordinator.JobEvent.JobCancelled;
import dev.troupe.coordinator.JobEvent.JobPaused;
import dev.troupe.coordinator.JobEvent.JobResumed;
import dev.troupe.coordinator.JobEvent.JobStarted;
import dev.troupe.coordinator.JobEvent.JobSubmitted;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The job queue's decisions and their application, without actors. */
class JobBookTest {
  private static JobBook run(JobBook book, List<JobEvent> events) {
    for (JobEvent e : events) book = book.apply(e);
    return book;
  }

  private static List<JobState> states(JobBook book) {
    return book.jobs().stream().map(Job::state).toList();
  }

  @Test
  void theFirstJobStartsTheOthersWaitInOrder() {
    JobBook b = JobBook.empty();
    List<JobEvent> first = b.submit("a.conf", "x", 1);
    assertEquals(
        List.of(new JobSubmitted("job-1", "a.conf", "x", 1), new JobStarted("job-1")), first);
    b = run(b, first);
    List<JobEvent> second = b.submit("b.conf", "y", 2);
    assertEquals(List.of(new JobSubmitted("job-2", "b.conf", "y", 2)), second);
    b = run(b, second);
    b = run(b, b.submit("c.conf", "z", 3));
    assertEquals(List.of(JobState.RUNNING, JobState.QUEUED, JobState.QUEUED), states(b));
    assertEquals("job-1", b.current().orElseThrow().id());
  }

  @Test
  void pauseKeepsTheTurnAndCancelPassesItOn() throws Exception {
    JobBook b = JobBook.empty();
    for (String n : List.of("a", "b", "c")) b = run(b, b.submit(n, n, 0));
    assertEquals(List.of(new JobPaused("job-1")), b.pause("job-1"));
    b = run(b, b.pause("job-1"));
    assertEquals(List.of(JobState.PAUSED, JobState.QUEUED, JobState.QUEUED), states(b));
    // a new job still waits: the paused one holds the turn
    b = run(b, b.submit("d", "d", 0));
    assertEquals(JobState.QUEUED, b.job("job-4").orElseThrow().state());
    assertEquals(List.of(new JobResumed("job-1")), b.resume("job-1"));
    b = run(b, b.resume("job-1"));
    assertEquals(
        List.of(new JobCancelled("job-1", "stop"), new JobStarted("job-2")),
        b.cancel("job-1", "stop"));
    b = run(b, b.cancel("job-1", "stop"));
    // cancelling a queued job starts nothing
    assertEquals(List.of(new JobCancelled("job-3", "no")), b.cancel("job-3", "no"));
    b = run(b, b.cancel("job-3", "no"));
    assertEquals(
        List.of(JobState.CANCELLED, JobState.RUNNING, JobState.CANCELLED, JobState.QUEUED),
        states(b));
    assertEquals("stop", b.job("job-1").orElseThrow().reason());
    // ids keep counting after cancellations
    assertEquals("job-5", b.submit("e", "e", 0).get(0).jobId());
  }

  @Test
  void devicesReportStepsAndEndsOfTheRunningJobOnly() throws Exception {
    JobBook b = JobBook.empty();
    for (String n : List.of("a", "b")) b = run(b, b.submit(n, n, 0));
    b = run(b, b.stepDone("job-1", 1, 10, 2.5, 100));
    assertEquals(1, b.job("job-1").orElseThrow().step());
    assertEquals(2.5, b.job("job-1").orElseThrow().loss());
    assertEquals(List.of(), b.stepDone("job-1", 1, 10, 2.4, 100), "a step is committed once");
    assertEquals(List.of(), b.stepDone("job-2", 1, 10, 2.4, 100), "job-2 is not running");
    assertEquals(
        List.of(new JobEvent.JobFailed("job-1", "boom"), new JobStarted("job-2")),
        b.runEnded("job-1", false, "boom"));
    JobBook paused = run(b, b.pause("job-1"));
    assertEquals(
        List.of(), paused.runEnded("job-1", true, ""), "a paused job's run end is not news");
    assertEquals(
        1,
        paused.stepDone("job-1", 2, 10, 2.3, 100).size(),
        "the step in flight when the job was paused is committed");
    JobBook cancelled = run(paused, paused.cancel("job-1", "by request"));
    assertEquals(List.of(), cancelled.stepDone("job-1", 2, 10, 2.3, 100), "job-1 was cancelled");
    b = run(b, b.runEnded("job-1", true, ""));
    assertEquals(List.of(JobState.COMPLETED, JobState.RUNNING), states(b));
  }

  @Test
  void refusalsSayWhy() throws Exception {
    JobBook b = JobBook.empty();
    JobBook.Refused none =
        assertThrows(JobBook.Refused.class, () -> JobBook.empty().pause("job-9"));
    assertEquals("unknown job 'job-9' (no jobs yet)", none.getMessage());
    for (String n : List.of("a", "b")) b = run(b, b.submit(n, n, 0));
    JobBook book = b;
    assertEquals(
        "unknown job 'job-7' (known: job-1, job-2)",
        assertThrows(JobBook.Refused.class, () -> book.cancel("job-7", "")).getMessage());
    assertTrue(
        assertThrows(JobBook.Refused.class, () -> book.pause("job-2"))
            .getMessage()
            .contains("job-2 is QUEUED"));
    assertTrue(
        assertThrows(JobBook.Refused.class, () -> book.resume("job-1"))
            .getMessage()
            .contains("only a PAUSED job"));
    JobBook cancelled = run(book, book.cancel("job-2", "x"));
    assertTrue(
        assertThrows(JobBook.Refused.class, () -> cancelled.cancel("job-2", "again"))
            .getMessage()
            .contains("already ended (CANCELLED)"));
  }
}
