package dev.troupe.pipeline.job;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigObject;
import com.typesafe.config.ConfigValue;
import com.typesafe.config.ConfigValueType;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/** The defaults under troupe.job in reference.conf: all there, every key with a comment. */
class ReferenceConfTest {
  static Config job() {
    return ConfigFactory.defaultReference().getConfig("troupe.job");
  }

  static void leaves(ConfigObject object, String prefix, Map<String, ConfigValue> out) {
    for (var e : object.entrySet()) {
      String path = prefix + e.getKey();
      if (e.getValue().valueType() == ConfigValueType.OBJECT) {
        leaves((ConfigObject) e.getValue(), path + ".", out);
      } else {
        out.put(path, e.getValue());
      }
    }
  }

  @Test
  void everyDefaultIsCommented() {
    Map<String, ConfigValue> leaves = new TreeMap<>();
    leaves(job().root(), "", leaves);
    assertEquals(47, leaves.size(), leaves.keySet().toString());
    List<String> bare = new ArrayList<>();
    leaves.forEach(
        (k, v) -> {
          if (v.origin().comments().isEmpty()) bare.add(k);
        });
    assertTrue(bare.isEmpty(), "keys without a comment: " + bare);
  }
}
