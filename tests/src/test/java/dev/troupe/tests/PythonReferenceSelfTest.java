package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The reference checks itself before it judges Troupe: its unit tests compare it with a second
 * formulation (Meta's interleaved complex rotary, one query at a time, float64), LoRA with merged
 * weights, sharded with single-file loading and BF16 decoding. Needs python3-torch.
 */
class PythonReferenceSelfTest {
  @Test
  void referenceAgreesWithAnIndependentFormulation() throws Exception {
    assumeTrue(PythonReference.available(), "python3-torch is not installed");
    Process p =
        new ProcessBuilder(PythonReference.PYTHON.toString(), "-m", "unittest", "-q")
            .directory(Path.of("src/test/python").toFile())
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes());
    assertTrue(p.waitFor(300, TimeUnit.SECONDS), "python unittest did not finish");
    assertEquals(0, p.exitValue(), out);
    assertTrue(out.contains("OK"), out);
  }
}
