package dev.troupe.coordinator;

/** Where a job stands. One job runs at a time; the others wait in submission order. */
public enum JobState {
  /** Waiting for the running job to end. */
  QUEUED,
  /** The job being trained. */
  RUNNING,
  /** Stopped at a step boundary on request; resumes where it stopped. */
  PAUSED,
  /** Trained to its last step. */
  COMPLETED,
  /** Ended by an error. */
  FAILED,
  /** Ended on request. */
  CANCELLED;

  /** Whether the job has ended (it will not run again). */
  public boolean ended() {
    return this == COMPLETED || this == FAILED || this == CANCELLED;
  }
}
