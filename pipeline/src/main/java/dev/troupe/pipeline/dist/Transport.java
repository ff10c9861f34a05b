package dev.troupe.pipeline.dist;

import org.bytedeco.pytorch.Tensor;

/**
 * Point-to-point tensor messages between the ranks of a plan, as {@code torch.distributed}'s send
 * and recv: a send never blocks (the tensor's bytes are copied out before it returns), a receive
 * blocks until the message with that sender and tag has arrived. Messages of one sender and tag
 * arrive in the order sent. The cluster runtime implements it over actor messages; {@link
 * LocalTransport} within one process.
 */
public interface Transport {
  /** Sends a copy of {@code t} to rank {@code to} under {@code tag}. */
  void send(int to, String tag, Tensor t);

  /**
   * The next tensor rank {@code from} sent under {@code tag}, owned by the caller.
   *
   * @throws TransportException when the run was aborted (a peer failed or the job was stopped)
   */
  Tensor receive(int from, String tag);

  /** Raised by a receive that cannot complete: the run is over. */
  final class TransportException extends RuntimeException {
    public TransportException(String message) {
      super(message);
    }
  }
}
