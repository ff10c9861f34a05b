package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorTensorHook;

/**
 * Megatron's two conjugate operators, made from an {@link AllReduce} for autograd. libtorch's C++
 * custom autograd functions are not reachable from Java, so:
 *
 * <ul>
 *   <li>{@link #sum} ("g"): forward all-reduce of partial sums, backward identity. Written {@code s
 *       + (p − p.detach())} with {@code s} the reduced copy: the value is {@code s} exactly, the
 *       gradient reaches {@code p} unchanged.
 *   <li>{@link Input#mark} ("f"): forward identity, backward all-reduce: a gradient hook on an
 *       alias of a branch's replicated input sums the partial input gradients of the shards.
 * </ul>
 *
 * Every shard of a stage runs the same layers in the same order, forward and backward, so the
 * reduces of all shards pair up in order.
 */
final class TensorParallel {
  private TensorParallel() {}

  /** The full sum of the shards' partial outputs {@code partial}, differentiable where needed. */
  static Tensor sum(Tensor partial, AllReduce reduce) {
    if (reduce == AllReduce.NONE) return partial;
    if (!GradMode.is_enabled() || !partial.requires_grad()) {
      reduce.sumInPlace(partial);
      return partial;
    }
    Tensor detached = partial.detach();
    Tensor s = detached.clone();
    reduce.sumInPlace(s);
    return s.add(partial.sub(detached));
  }

  /**
   * The input of a tensor-parallel branch (attention or MLP after its norm). One per layer and
   * branch: its hook is a native callback, made once.
   */
  static final class Input implements AutoCloseable {
    private AllReduce reduce = AllReduce.NONE;
    private TensorTensorHook hook;

    /**
     * {@code x} as the branch's input: under autograd with a real reduce, an alias whose gradient
     * is summed over the shards on its way back; else {@code x} itself.
     */
    Tensor mark(Tensor x, AllReduce reduce) {
      if (reduce == AllReduce.NONE || !GradMode.is_enabled() || !x.requires_grad()) return x;
      this.reduce = reduce;
      if (hook == null) {
        hook =
            new TensorTensorHook() {
              @Override
              public TensorBase call(TensorBase grad) {
                Tensor summed;
                try (PointerScope scope = new PointerScope()) {
                  summed = Torch.keep(new Tensor(grad).clone());
                }
                grad.close(); // JavaCPP's copy of the argument (see Linear's hooks)
                Input.this.reduce.sumInPlace(summed);
                Tensor previous = LAST.get();
                if (previous != null) previous.close();
                LAST.set(summed);
                return summed;
              }
            };
        hook.retainReference(); // made inside a layer's scope; must outlive it
      }
      Tensor alias = x.alias();
      alias.register_hook(hook);
      return alias;
    }

    @Override
    public void close() {
      if (hook != null) hook.close();
      hook = null;
    }
  }

  /**
   * The gradient the last hook returned, on this thread: libtorch copies the handle when the hook
   * returns, so this one is freed at the next hook call (as in {@link Linear}).
   */
  private static final ThreadLocal<Tensor> LAST = new ThreadLocal<>();
}
