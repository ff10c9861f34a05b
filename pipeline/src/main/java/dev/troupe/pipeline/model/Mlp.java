package dev.troupe.pipeline.model;

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
    Tensor h = torch.silu(gate.forward(x)).mul(up.forward(x));
    Tensor out = down.forward(h);
    out = TensorParallel.sum(out, reduce); // tensor-parallel seam
    if (downBias != null) out.add_(downBias);
    return out;
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
