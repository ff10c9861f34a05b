package dev.troupe.pipeline.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.bytedeco.openblas.global.openblas_full;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * OpenBLAS's thread count as {@link BlasThreads} sets it, read back from OpenBLAS itself: sized by
 * the compute dtype, one inside a single-threaded section, and back when the last of several
 * sections on different threads ends, also where a model sized the pool meanwhile.
 */
class BlasThreadsTest {
  private static int openblas() {
    return openblas_full.openblas_get_num_threads();
  }

  private int torchThreads;

  @BeforeEach
  void twoThreads() {
    torchThreads = torch.get_num_threads();
    torch.set_num_threads(2);
  }

  @AfterEach
  void restore() {
    torch.set_num_threads(torchThreads);
    BlasThreads.size(ComputeDtype.FP32);
  }

  /**
   * Troupe's JVM makes OpenBLAS's idle workers sleep after 2^16 cycles, where nothing in the
   * environment says otherwise; a user's own setting is left as it is. Read back from OpenBLAS.
   */
  @Test
  void openBlasReadsTheShortSpinUnlessTheUserSetOne() {
    String user = System.getenv("OPENBLAS_THREAD_TIMEOUT");
    if (user == null) user = System.getenv("GOTO_THREAD_TIMEOUT");
    int expected =
        user == null
            ? Natives.OPENBLAS_THREAD_TIMEOUT
            : Math.max(0, Integer.parseInt(user.strip().replaceAll("^([+-]?\\d+).*", "$1")));
    assertEquals(expected, BlasThreads.spinTimeoutExponent());
    // the workers restarted with it still split a product
    BlasThreads.size(ComputeDtype.FP32);
    assertEquals(2, openblas());
  }

  @Test
  void theDtypeSizesThePoolAndASectionRunsOnOneThread() throws Exception {
    BlasThreads.size(ComputeDtype.FP32);
    assertEquals(2, openblas());
    assertEquals(1, (int) BlasThreads.onCallingThread(BlasThreadsTest::openblas));
    assertEquals(2, openblas());
    BlasThreads.size(ComputeDtype.BF16);
    assertEquals(1, openblas());
    assertEquals(1, (int) BlasThreads.onCallingThread(BlasThreadsTest::openblas));
    assertEquals(1, openblas());
  }

  @Test
  void sectionsOnSeveralThreadsRestoreTheCountWhenTheLastEnds() throws Exception {
    BlasThreads.size(ComputeDtype.FP32);
    CountDownLatch inside = new CountDownLatch(1);
    CountDownLatch leave = new CountDownLatch(1);
    ExecutorService other = Executors.newSingleThreadExecutor();
    try {
      Future<Integer> otherSection =
          other.submit(
              () ->
                  BlasThreads.onCallingThread(
                      () -> {
                        inside.countDown();
                        try {
                          leave.await();
                        } catch (InterruptedException e) {
                          throw new IllegalStateException(e);
                        }
                        return openblas();
                      }));
      inside.await();
      // this thread's section ends first: the other is still open
      assertEquals(1, (int) BlasThreads.onCallingThread(BlasThreadsTest::openblas));
      assertEquals(1, openblas(), "another thread's section is still open");
      // a model loaded meanwhile sizes the pool once the sections are over
      BlasThreads.size(ComputeDtype.FP32);
      assertEquals(1, openblas(), "sized while a section is open");
      leave.countDown();
      assertEquals(1, otherSection.get());
      assertEquals(2, openblas());
    } finally {
      leave.countDown();
      other.shutdownNow();
    }
  }

  @Test
  void aSectionThatThrowsStillRestoresTheCount() {
    BlasThreads.size(ComputeDtype.FP32);
    try {
      BlasThreads.onCallingThread(
          () -> {
            throw new IllegalStateException("body failed");
          });
    } catch (IllegalStateException expected) {
      // the body's own exception
    }
    assertEquals(2, openblas());
  }
}
