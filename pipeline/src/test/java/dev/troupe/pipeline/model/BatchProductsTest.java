package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.troupe.pipeline.engine.ComputeDtype;
import dev.troupe.pipeline.engine.Torch;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The attention's batched products split over threads ({@link BatchProducts}) give the tensor one
 * libtorch call gives, bit for bit, for the operand layouts the attention uses (transposed views
 * included), and fall back to the plain call where they should.
 */
class BatchProductsTest {
  private int threadsBefore;

  @BeforeEach
  void twoIntraOpThreadsAndOneBlasThread() {
    Torch.init();
    threadsBefore = torch.get_num_threads();
    // libtorch's default counts physical cores as cpuinfo sees them: 1 on some 2-core VMs
    torch.set_num_threads(Math.max(2, threadsBefore));
    Torch.sizeBlasThreads(ComputeDtype.BF16); // OpenBLAS on the calling thread: the split applies
  }

  @AfterEach
  void restoreThreads() {
    torch.set_num_threads(threadsBefore);
    Torch.sizeBlasThreads(ComputeDtype.FP32);
  }

  @Test
  void splitProductsEqualOneCallBitForBit() {
    try (PointerScope scope = new PointerScope()) {
      torch.manual_seed(7);
      // odd batch sizes too: the parts are unequal
      for (long n : new long[] {2, 5, 64}) {
        Tensor a = torch.randn(new long[] {n, 96, 40});
        Tensor b = torch.randn(new long[] {n, 40, 72});
        Tensor bt = torch.randn(new long[] {n, 72, 40}).transpose(1, 2); // a transposed view
        Tensor at = torch.randn(new long[] {n, 40, 96}).transpose(1, 2);
        Tensor bias = torch.randn(new long[] {96, 72});
        assertEquals((int) Math.min(n, torch.get_num_threads()), BatchProducts.parts(a, b));

        assertBitEqual(torch.bmm(a, b), BatchProducts.bmm(a, b));
        assertBitEqual(torch.bmm(a, bt), BatchProducts.bmm(a, bt));
        assertBitEqual(torch.bmm(at, b), BatchProducts.bmm(at, b));
        assertBitEqual(
            torch.baddbmm(bias, a, bt, new Scalar(1.0), new Scalar(0.125)),
            BatchProducts.baddbmm(bias, a, bt, 0.125));
      }
    }
  }

  @Test
  void noSplitWhereItDoesNotApply() {
    try (PointerScope scope = new PointerScope()) {
      Tensor a = torch.randn(new long[] {8, 16, 16});
      Tensor b = torch.randn(new long[] {8, 16, 16});
      assertEquals(1, BatchProducts.parts(a.narrow(0, 0, 1), b.narrow(0, 0, 1)), "batch of one");
      assertEquals(
          1, BatchProducts.parts(a.to(ScalarType.BFloat16), b.to(ScalarType.BFloat16)), "bf16");
      Tensor leaf = a.clone().set_requires_grad(true);
      assertEquals(1, BatchProducts.parts(leaf, b), "under autograd");
      // and autograd still reaches the leaf through the plain call
      BatchProducts.bmm(leaf, b).sum().backward();
      assertTrue(leaf.grad().defined());

      Torch.sizeBlasThreads(ComputeDtype.FP32); // OpenBLAS has its own threads again
      assertEquals(1, BatchProducts.parts(a, b), "OpenBLAS multi-threaded");
    }
  }

  private static void assertBitEqual(Tensor expected, Tensor actual) {
    assertArrayEquals(expected.sizes().vec().get(), actual.sizes().vec().get());
    assertTrue(torch.equal(expected, actual), "split product differs from one call");
  }
}
