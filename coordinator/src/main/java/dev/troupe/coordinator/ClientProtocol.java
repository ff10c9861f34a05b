package dev.troupe.coordinator;

import dev.troupe.persistence.ClusterMessage;

/**
 * What cluster clients ({@code troupe submit|status|jobs|pause|resume|cancel|drain}) send through
 * Pekko's cluster client to the {@link ClientGateway} on a coordinator node. Each request carries
 * the shared secret of {@code troupe.client.secret}; answers are {@link
 * CoordinatorProtocol.Reply}s.
 */
public final class ClientProtocol {
  private ClientProtocol() {}

  /** A client request. */
  public sealed interface Request extends ClusterMessage {
    /** The shared secret the client was configured with. */
    String secret();
  }

  /** Queues a job: its name (the job file's name) and the job file's text. */
  public record SubmitJob(String secret, String name, String config) implements Request {}

  /** Pauses, resumes or cancels a job. */
  public record ControlJob(String secret, String jobId, CoordinatorProtocol.Action action)
      implements Request {}

  /** Drains a node (see {@link CoordinatorProtocol.Drain}). */
  public record DrainNode(String secret, String node) implements Request {}

  /** Lists every job. */
  public record ListAllJobs(String secret) implements Request {}
}
