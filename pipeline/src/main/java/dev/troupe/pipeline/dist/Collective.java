package dev.troupe.pipeline.dist;

import dev.troupe.pipeline.engine.Torch;
import dev.troupe.pipeline.model.AllReduce;
import java.util.List;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

/**
 * An all-reduce (sum) among a group of ranks over a {@link Transport}: every member sends its
 * tensor to every other, then adds all of them in group order, so that every member ends with
 * bit-identical sums whatever the order of arrival. Calls pair up by their sequence number: every
 * member must make the same calls in the same order (the schedule guarantees it).
 *
 * <p>This is the direct exchange, {@code (n−1)·size} bytes sent per member: right for the small
 * groups and small tensors (LoRA gradients, one layer's activations) of the plans built so far; a
 * ring would send {@code 2·(n−1)/n·size} and is the next step for large groups. The NCCL collective
 * for CUDA devices is not built.
 */
public final class Collective implements AllReduce {
  private final Transport transport;
  private final String name;
  private final List<Integer> group;
  private final int self;
  private long sequence;

  /**
   * @param name names the group in message tags (different groups of one rank must differ)
   * @param group the member ranks, in the order of summation
   * @param self this rank, a member
   */
  public Collective(Transport transport, String name, List<Integer> group, int self) {
    if (!group.contains(self)) {
      throw new IllegalArgumentException("rank " + self + " is not in group " + name + group);
    }
    this.transport = transport;
    this.name = name;
    this.group = List.copyOf(group);
    this.self = self;
  }

  public int size() {
    return group.size();
  }

  @Override
  public void sumInPlace(Tensor t) {
    if (group.size() == 1) return;
    String tag = name + "#" + sequence++;
    for (int r : group) if (r != self) transport.send(r, tag, t);
    try (PointerScope scope = new PointerScope();
        NoGradGuard noGrad = new NoGradGuard()) {
      Tensor sum = null;
      for (int r : group) {
        Tensor part = r == self ? t.detach().clone() : Torch.handOver(transport.receive(r, tag));
        sum = sum == null ? part : sum.add_(part);
      }
      t.copy_(sum);
    }
  }
}
