package dev.troupe.device;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class DeviceSpecTest {
  @Test
  void parsesEveryForm() {
    assertEquals(DeviceSpec.cpu(1), DeviceSpec.parse("cpu"));
    assertEquals(DeviceSpec.cpu(3), DeviceSpec.parse("CPU:3"));
    assertEquals(List.of(), Devices.discover(DeviceSpec.parse("none"), 1), "a coordinator only");
    assertEquals(new DeviceSpec(DeviceInfo.Kind.CUDA, 0, List.of()), DeviceSpec.parse("cuda"));
    assertEquals(
        new DeviceSpec(DeviceInfo.Kind.CUDA, 2, List.of(0, 1)), DeviceSpec.parse("cuda:0,1"));
  }

  @ParameterizedTest
  @ValueSource(strings = {"", "gpu", "cpu:", "cpu:0", "cpu:x", "cuda:", "cuda:1,1", "cuda:-1"})
  void refusesWhatItCannotMeanNamingTheValue(String text) {
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> DeviceSpec.parse(text));
    assertTrue(e.getMessage().contains("'" + text + "'"), e.getMessage());
  }

  @Test
  void cpuSlotsShareTheMachine() {
    List<DeviceInfo> devices = Devices.discover(DeviceSpec.cpu(2), 3);
    assertEquals(List.of("cpu:0", "cpu:1"), devices.stream().map(DeviceInfo::id).toList());
    long total = Devices.physicalMemory();
    assertTrue(total > 0);
    for (DeviceInfo d : devices) {
      assertEquals(total / 2, d.memoryBytes());
      assertEquals(3, d.threads());
    }
    assertTrue(Devices.defaultThreads(DeviceSpec.cpu(1)) >= 1);
  }

  @Test
  void cudaDiscoveryIsSaidToBeAbsent() {
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class, () -> Devices.discover(DeviceSpec.parse("cuda"), 1));
    assertTrue(e.getMessage().contains("not built yet"), e.getMessage());
  }
}
