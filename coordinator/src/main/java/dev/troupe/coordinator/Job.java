package dev.troupe.coordinator;

/**
 * A job as the coordinator keeps it.
 *
 * @param id {@code job-1}, {@code job-2}, ... in submission order
 * @param name a label for people (the job file's name)
 * @param config the job file's HOCON text, kept so that every node reads the same job
 * @param state where it stands
 * @param submittedAtMillis when it was submitted (epoch milliseconds)
 * @param reason why it ended, where it ended by cancellation or failure; else empty
 * @param step the last step committed (0 before the first)
 * @param totalSteps the job's number of steps, once a device has reported it (else 0)
 * @param loss the loss of the last committed step (NaN before the first)
 * @param tokensPerS the training speed at the last committed step (NaN before the first)
 */
public record Job(
    String id,
    String name,
    String config,
    JobState state,
    long submittedAtMillis,
    String reason,
    long step,
    long totalSteps,
    double loss,
    double tokensPerS) {
  Job withState(JobState s, String why) {
    return new Job(id, name, config, s, submittedAtMillis, why, step, totalSteps, loss, tokensPerS);
  }

  Job withStep(long newStep, long total, double newLoss, double speed) {
    return new Job(
        id, name, config, state, submittedAtMillis, reason, newStep, total, newLoss, speed);
  }
}
