package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.VoidTensorHook;

/**
 * A differentiable function whose backward is written by hand, keeping only the tensors it names,
 * where autograd through the forward's operations would keep more (attention's probabilities, a
 * SwiGLU's activations). libtorch's C++ custom autograd functions are not reachable from Java, so
 * it is made with gradient hooks, as {@link Linear}'s quantized backward is: the output, computed
 * without autograd, is linked to each input that needs a gradient by a zero-valued term ({@code 0 ·
 * x[:1, ..., :1]}); a hook on the output keeps {@code dL/dout}, and the first hook on a link's
 * input that autograd reaches computes the gradients, each link's hook handing back its own.
 *
 * <p>Every call has hooks of its own (a pipeline schedule runs several microbatches' forwards
 * before their backwards). What the backward needs is freed as soon as it has run; the hooks
 * themselves by the next call on the same thread once their backward has run (backward passes run
 * on the thread that started them, so it has returned by then). A call whose backward never runs (a
 * step without label tokens, an exception part way) keeps its tensors until {@link #releaseAll} at
 * the start of the next step.
 */
final class HookedBackward {
  private HookedBackward() {}

  /** The hand-written backward. */
  interface Gradients {
    /**
     * The gradients of the inputs that are {@code wanted} (null for the others), each in its
     * input's shape and dtype and held by the caller ({@code Torch.keep}), from the {@code saved}
     * tensors and the output's gradient.
     */
    Tensor[] compute(Tensor[] saved, Tensor gradOut, boolean[] wanted);
  }

  /** The input gradient the last hook on this thread returned (see {@link Call#hook}). */
  private static final ThreadLocal<Tensor> HANDED_OVER = new ThreadLocal<>();

  /** This thread's calls whose hooks or tensors are not freed yet. */
  private static final ThreadLocal<List<Call>> OPEN = ThreadLocal.withInitial(ArrayList::new);

  /**
   * {@code out}, computed from {@code inputs} without autograd, as a differentiable function of
   * those inputs that require a gradient (at least one must), with {@code gradients} as its
   * backward over the {@code saved} tensors (kept until the backward has run).
   */
  static Tensor attach(Tensor out, Tensor[] inputs, Tensor[] saved, Gradients gradients) {
    boolean any = false;
    for (Tensor in : inputs) any |= in.requires_grad();
    if (!any) throw new IllegalArgumentException("no input requires a gradient");
    List<Call> open = OPEN.get();
    open.removeIf(Call::closeIfSpent);
    Call call = new Call(inputs.length, saved, gradients);
    open.add(call);
    Tensor zero = null;
    for (int i = 0; i < inputs.length; i++) {
      if (!inputs[i].requires_grad()) continue;
      Tensor link = inputs[i].alias();
      link.register_hook(call.inputGradient[i]);
      call.wanted[i] = true;
      call.expected++;
      // [1, ..., 1]: broadcasts onto the output
      Tensor term = link;
      for (int d = 0; d < link.dim(); d++) term = term.narrow(d, 0, 1);
      term = term.mul(Torch.scalar(0.0));
      zero = zero == null ? term : zero.add(term);
    }
    Tensor y = out.add(zero);
    y.register_hook(call.keepGradient);
    return y;
  }

  /**
   * Frees the hooks and kept tensors of every call on this thread, also of those whose backward has
   * not run. Only where no graph made on this thread is alive any more: between steps.
   */
  static void releaseAll() {
    List<Call> open = OPEN.get();
    for (Call c : open) c.close();
    open.clear();
  }

  /** Calls on this thread not freed yet (for tests). */
  static int open() {
    return OPEN.get().size();
  }

  /** One call's saved tensors, output gradient, input gradients and hooks. */
  private static final class Call {
    private final Tensor[] saved;
    private final Gradients gradients;
    private final boolean[] wanted;
    private final TensorTensorHook[] inputGradient;
    private Tensor gradOut;
    private Tensor[] grads;
    private int expected;
    private int answered;
    private boolean savedFreed;

    final VoidTensorHook keepGradient =
        new VoidTensorHook() {
          @Override
          public void call(TensorBase grad) {
            if (gradOut != null) gradOut.close();
            gradOut = Torch.own(grad);
            grad.close(); // JavaCPP's copy of the argument (see Linear's hooks)
          }
        };

    Call(int inputs, Tensor[] saved, Gradients gradients) {
      this.saved = new Tensor[saved.length];
      // owned by this call, not by the caller's scope: the backward comes after that has closed.
      // Detached, so that no saved tensor holds the graph that holds these hooks; a leaf (a
      // parameter) holds no graph and is kept as itself, so that a backward can reach its grad
      for (int i = 0; i < saved.length; i++) {
        this.saved[i] = Torch.own(saved[i].is_leaf() ? saved[i] : saved[i].detach());
      }
      this.gradients = gradients;
      this.wanted = new boolean[inputs];
      this.inputGradient = new TensorTensorHook[inputs];
      for (int i = 0; i < inputs; i++) inputGradient[i] = hook(i);
      keepGradient.retainReference();
      for (TensorTensorHook h : inputGradient) h.retainReference();
    }

    private TensorTensorHook hook(int input) {
      return new TensorTensorHook() {
        @Override
        public TensorBase call(TensorBase ignored) {
          ignored.close(); // JavaCPP's copy of the argument (see Linear's hooks)
          if (grads == null) {
            if (gradOut == null) {
              throw new IllegalStateException(
                  "the output gradient of a hooked function is missing");
            }
            grads = gradients.compute(saved, gradOut, wanted);
            // what the backward needed is freed now, not with the hooks
            freeSaved();
            gradOut.close();
            gradOut = null;
          }
          answered++;
          Tensor grad = grads[input];
          grads[input] = null;
          // libtorch takes its own reference when the hook returns: this one is freed at the
          // next hand-over on this thread
          Tensor previous = HANDED_OVER.get();
          if (previous != null) previous.close();
          HANDED_OVER.set(grad);
          return grad;
        }
      };
    }

    /** Frees this call's hooks and tensors if its backward has run; true if it did. */
    boolean closeIfSpent() {
      if (answered < expected) return false;
      close();
      return true;
    }

    private void freeSaved() {
      if (savedFreed) return;
      for (Tensor t : saved) t.close();
      savedFreed = true;
    }

    void close() {
      freeSaved();
      if (gradOut != null) gradOut.close();
      if (grads != null) {
        for (Tensor g : grads) if (g != null) g.close();
      }
      keepGradient.close();
      for (TensorTensorHook h : inputGradient) h.close();
    }
  }
}
