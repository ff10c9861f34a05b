package dev.troupe.coordinator;

import dev.troupe.persistence.ClusterMessage;

/** What happened to the job queue, as journaled (in the past tense). */
public sealed interface JobEvent extends ClusterMessage {
  /** The job the event is about. */
  String jobId();

  /** A job was submitted and queued. */
  record JobSubmitted(String jobId, String name, String config, long atMillis)
      implements JobEvent {}

  /** A queued job became the running one. */
  record JobStarted(String jobId) implements JobEvent {}

  /** The running job was paused. */
  record JobPaused(String jobId) implements JobEvent {}

  /** A paused job was resumed: it runs again, or waits if another job runs now. */
  record JobResumed(String jobId) implements JobEvent {}

  /** A job was cancelled. */
  record JobCancelled(String jobId, String reason) implements JobEvent {}

  /** A device finished step {@code step} of the running job. */
  record StepCommitted(String jobId, long step, long total, double loss, double tokensPerS)
      implements JobEvent {}

  /** The running job trained to its last step. */
  record JobCompleted(String jobId) implements JobEvent {}

  /** The running job failed. */
  record JobFailed(String jobId, String reason) implements JobEvent {}

  /**
   * The running job was planned again after {@code cause} (a device lost, the coordinator
   * recovered): from {@code oldPlan} ("" where not known) to {@code newPlan}. History only: the
   * queue is unchanged by it.
   */
  record JobReplanned(
      String jobId, String cause, int generation, String oldPlan, String newPlan, long atMillis)
      implements JobEvent {}
}
