package dev.troupe.pipeline.model;

import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.pytorch.Tensor;

/**
 * Grouped-query self-attention with rotary embeddings. Under tensor parallelism a shard holds
 * {@code heads / tp} query heads and {@code kvHeads / tp} key/value heads: q/k/v are
 * column-parallel (output rows), o_proj row-parallel (input columns), and the shards' o_proj
 * outputs are partial sums that {@link AllReduce} completes.
 */
final class Attention implements AutoCloseable {
  final Linear q;
  final Linear k;
  final Linear v;
  final Linear o;
  private final Tensor oBias;
  private final int heads;
  private final int kvHeads;
  private final int headDim;

  Attention(
      Linear q, Linear k, Linear v, Linear o, Tensor oBias, int heads, int kvHeads, int headDim) {
    this.q = q;
    this.k = k;
    this.v = v;
    this.o = o;
    this.oBias = oBias;
    this.heads = heads;
    this.kvHeads = kvHeads;
    this.headDim = headDim;
  }

  /**
   * @param x [batch, seq, hidden]
   * @param mask boolean [seq, seq] (true = may attend), or null for plain causal attention
   */
  Tensor forward(Tensor x, Rotary rope, Tensor mask, AllReduce reduce) {
    long b = x.size(0);
    long t = x.size(1);
    // q, k, v are freed once attended (the kernel keeps what its backward needs)
    Tensor attn =
        Torch.scoped(
            () -> {
              Tensor qh = rope.apply(q.forward(x).view(b, t, heads, headDim).transpose(1, 2));
              Tensor kh = rope.apply(k.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2));
              Tensor vh = v.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2);
              // the engine's fused attention: causal unless a window mask is given; GQA without
              // copying k/v
              return Kernels.attention(qh, kh, vh, mask, heads != kvHeads)
                  .transpose(1, 2)
                  .reshape(b, t, (long) heads * headDim);
            });
    Tensor out = o.forward(attn);
    attn.close(); // o keeps it where its backward needs it
    out = TensorParallel.sum(out, reduce); // tensor-parallel seam: partial o_proj sums -> full
    if (oBias != null) out.add_(oBias);
    return out;
  }

  Tensor oBias() {
    return oBias;
  }

  @Override
  public void close() {
    q.close();
    k.close();
    v.close();
    o.close();
    if (oBias != null) oBias.close();
  }
}
