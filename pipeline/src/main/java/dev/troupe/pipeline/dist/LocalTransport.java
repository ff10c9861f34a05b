package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.engine.Torch;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.bytedeco.pytorch.Tensor;

/**
 * A {@link Transport} between threads of one process: the ranks of a plan run on threads of their
 * own and exchange copies of tensors through queues. For tests and for several CPU devices of one
 * node.
 */
public final class LocalTransport {
  private final ConcurrentHashMap<String, BlockingQueue<Tensor>> queues = new ConcurrentHashMap<>();
  private volatile String aborted;

  /** The transport as rank {@code rank} sees it. */
  public Transport rank(int rank) {
    return new Transport() {
      @Override
      public void send(int to, String tag, Tensor t) {
        queue(rank, to, tag).add(Torch.keep(t.detach().clone()));
      }

      @Override
      public Tensor receive(int from, String tag) {
        BlockingQueue<Tensor> q = queue(from, rank, tag);
        try {
          while (true) {
            Tensor t = q.poll(100, TimeUnit.MILLISECONDS);
            if (t != null) return t;
            if (aborted != null) throw new TransportException(aborted);
          }
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new TransportException("interrupted");
        }
      }
    };
  }

  /** Makes every waiting and later receive fail with {@code reason}. */
  public void abort(String reason) {
    aborted = reason;
  }

  private BlockingQueue<Tensor> queue(int from, int to, String tag) {
    return queues.computeIfAbsent(from + ">" + to + ":" + tag, k -> new LinkedBlockingQueue<>());
  }
}
