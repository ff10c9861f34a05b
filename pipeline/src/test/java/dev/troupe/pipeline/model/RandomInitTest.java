package dev.troupe.pipeline.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.pipeline.safetensors.SafetensorsFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RandomInitTest {
  @TempDir Path dir;

  @Test
  void headStdScalesTheOutputHeadAloneFromTheSameDraws() throws Exception {
    Path plain = dir.resolve("plain");
    Path sharp = dir.resolve("sharp");
    new RandomInit(TinyConfigs.llama()).seed(5).write(plain);
    new RandomInit(TinyConfigs.llama()).seed(5).headStd(0.125).write(sharp);
    try (SafetensorsFile a = SafetensorsFile.open(plain.resolve("model.safetensors"));
        SafetensorsFile b = SafetensorsFile.open(sharp.resolve("model.safetensors"))) {
      for (String name : a.names()) {
        float[] x = floats(a.data(name));
        float[] y = floats(b.data(name));
        if (!name.equals("lm_head.weight")) {
          assertArrayEquals(x, y, name + " is untouched");
          continue;
        }
        // Each value is the same standard normal draw, times 0.125 instead of 0.02.
        for (int i = 0; i < x.length; i++) assertEquals(x[i] / 0.02f, y[i] / 0.125f, 1e-4, name);
      }
    }
    var init =
        new ObjectMapper().readTree(sharp.resolve("config.json").toFile()).path("troupe_init");
    assertEquals(0.125, init.path("head_std").asDouble());
    var none =
        new ObjectMapper().readTree(plain.resolve("config.json").toFile()).path("troupe_init");
    assertFalse(none.has("head_std"), "recorded only where set");
  }

  private static float[] floats(ByteBuffer b) {
    float[] f = new float[b.remaining() / 4];
    b.asFloatBuffer().get(f);
    return f;
  }
}
