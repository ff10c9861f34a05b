package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/**
 * The SwiGLU feed-forward block {@code down(silu(gate(x)) * up(x))}. Under tensor parallelism
 * gate/up are column-parallel and down row-parallel; the shards' down outputs are partial sums.
 */
final class Mlp implements AutoCloseable {
  final Linear gate;
  final Linear up;
  final Linear down;
  private final Tensor downBias;

  Mlp(Linear gate, Linear up, Linear down, Tensor downBias) {
    this.gate = gate;
    this.up = up;
    this.down = down;
    this.downBias = downBias;
  }

  Tensor forward(Tensor x, AllReduce reduce) {
    // gate's, up's and the product's handles are freed once down has run (the product's
    // backward keeps gate's and up's outputs)
    Tensor out = Torch.scoped(() -> down.forward(swiglu(gate.forward(x), up.forward(x))));
    out = TensorParallel.sum(out, reduce); // tensor-parallel seam
    if (downBias != null) out.add_(downBias);
    return out;
  }

  /**
   * {@code silu(g) * u}. Under autograd with a backward of its own that keeps g and u alone:
   * autograd through the two operations keeps silu(g) as well (bench-m: 5.5 MiB a layer). The
   * gradients are computed by the operations autograd would run, from silu(g) computed again.
   */
  static Tensor swiglu(Tensor g, Tensor u) {
    if (!GradMode.is_enabled() || !(g.requires_grad() || u.requires_grad())) {
      return torch.silu(g).mul(u);
    }
    Tensor h;
    try (NoGradGuard noGrad = new NoGradGuard()) {
      h = torch.silu(g).mul_(u);
    }
    return HookedBackward.attach(h, new Tensor[] {g, u}, new Tensor[] {g, u}, Mlp::swigluBackward);
  }

  private static Tensor[] swigluBackward(Tensor[] saved, Tensor gradOut, boolean[] wanted) {
    Tensor g = saved[0];
    Tensor u = saved[1];
    Tensor[] grads = new Tensor[2];
    try (PointerScope scope = new PointerScope()) {
      if (wanted[0]) grads[0] = Torch.keep(torch.silu_backward(gradOut.mul(u), g));
      if (wanted[1]) grads[1] = Torch.keep(gradOut.mul(torch.silu(g)));
    }
    return grads;
  }

  Tensor downBias() {
    return downBias;
  }

  @Override
  public void close() {
    gate.close();
    up.close();
    down.close();
    if (downBias != null) downBias.close();
  }
}
