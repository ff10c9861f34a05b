package dev.troupe.persistence;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.serialization.SerializationExtension;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@link KryoSerializer} inside a real actor system configured as the runtime configures it. */
class KryoSerializerTest {
  record Shape(String name, long[] dims) implements ClusterMessage {
    @Override
    public boolean equals(Object o) {
      return o instanceof Shape s && name.equals(s.name) && Arrays.equals(dims, s.dims);
    }

    @Override
    public int hashCode() {
      return name.hashCode();
    }
  }

  record Step(
      long step,
      Shape shape,
      List<String> names,
      Map<String, Double> metrics,
      ArrayList<Integer> ids,
      HashMap<String, Long> counts,
      TensorBytes tensor)
      implements ClusterMessage {}

  record Hello(String text, ActorRef<String> replyTo) implements ClusterMessage {}

  record ClassicHello(org.apache.pekko.actor.ActorRef ref) implements ClusterMessage {}

  record NotListed(int x) implements ClusterMessage {}

  private static final String CLASSES =
      """
      troupe.serialization.kryo.classes = [
        "dev.troupe.persistence.KryoSerializerTest$Shape",
        "dev.troupe.persistence.KryoSerializerTest$Step",
        "dev.troupe.persistence.KryoSerializerTest$Hello",
        "dev.troupe.persistence.KryoSerializerTest$ClassicHello"
      ]
      """;

  private static org.apache.pekko.actor.ActorSystem system;
  private static KryoSerializer kryo;

  @BeforeAll
  static void start() {
    Config config =
        ConfigFactory.parseString(CLASSES + "\npekko.loglevel = WARNING")
            .withFallback(ConfigFactory.load());
    system = org.apache.pekko.actor.ActorSystem.create("kryo-test", config);
    kryo = new KryoSerializer(extended());
  }

  private static ExtendedActorSystem extended() {
    return (ExtendedActorSystem) system;
  }

  @AfterAll
  static void stop() {
    system.terminate();
  }

  private static Object roundTrip(Object o) {
    return kryo.fromBinary(kryo.toBinary(o));
  }

  private static TensorBytes tensor(int mib) {
    byte[] data = new byte[mib << 20];
    new Random(7).nextBytes(data);
    return new TensorBytes("BF16", new long[] {mib << 10, 512}, data);
  }

  @Test
  void recordsCollectionsAndTensorsRoundTrip() {
    ArrayList<Integer> ids = new ArrayList<>(List.of(3, 1, 4));
    HashMap<String, Long> counts = new HashMap<>(Map.of("a", 1L, "b", 2L));
    Step step =
        new Step(
            42,
            new Shape("q", new long[] {4, 8}),
            List.of("x", "y", "z"),
            Map.of("loss", 2.5, "lr", 1e-4),
            ids,
            counts,
            tensor(1));
    Step back = (Step) roundTrip(step);
    assertEquals(step, back);
    assertArrayEquals(step.tensor().data(), back.tensor().data());
    assertEquals(List.of(), roundTrip(List.of()));
    assertEquals(List.of("one"), roundTrip(List.of("one")));
    assertEquals(Map.of(), roundTrip(Map.of()));
    java.util.UUID id = java.util.UUID.randomUUID();
    assertEquals(id, roundTrip(id));
    assertEquals(java.util.Set.of(1, 2), roundTrip(java.util.Set.of(1, 2)));
  }

  @Test
  void pekkoPicksThisSerializerForClusterMessages() {
    var serialization = SerializationExtension.get(extended());
    Shape msg = new Shape("k", new long[] {1});
    assertEquals(KryoSerializer.IDENTIFIER, serialization.findSerializerFor(msg).identifier());
    byte[] bytes = serialization.serialize(msg).get();
    assertEquals(msg, serialization.deserialize(bytes, KryoSerializer.IDENTIFIER, "").get());
  }

  @Test
  void typedActorRefsTravelAsPathsAndStillDeliver() throws Exception {
    CompletableFuture<String> got = new CompletableFuture<>();
    ActorRef<String> target =
        Adapter.spawn(
            system,
            Behaviors.receiveMessage(
                (String s) -> {
                  got.complete(s);
                  return Behaviors.same();
                }),
            "target");
    Hello back = (Hello) roundTrip(new Hello("hi", target));
    assertEquals(target, back.replyTo());
    back.replyTo().tell("delivered");
    assertEquals("delivered", got.get(10, TimeUnit.SECONDS));
    org.apache.pekko.actor.ActorRef classic = Adapter.toClassic(target);
    assertEquals(classic, ((ClassicHello) roundTrip(new ClassicHello(classic))).ref());
  }

  @Test
  void anUnlistedClassIsRefusedByName() {
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> kryo.toBinary(new NotListed(1)));
    assertTrue(e.getMessage().contains("KryoSerializerTest$NotListed"), e.getMessage());
    assertTrue(e.getMessage().contains(KryoSerializer.CLASSES_KEY), e.getMessage());
    // nested inside a built-in collection too
    IllegalArgumentException nested =
        assertThrows(
            IllegalArgumentException.class, () -> kryo.toBinary(List.of(new NotListed(2))));
    assertTrue(nested.getMessage().contains("KryoSerializerTest$NotListed"), nested.getMessage());
  }

  @Test
  void idsDependOnlyOnTheConfiguredOrder() {
    KryoSerializer other = new KryoSerializer(extended());
    Shape msg = new Shape("v", new long[] {2, 3});
    assertArrayEquals(kryo.toBinary(msg), other.toBinary(msg));
    assertEquals(msg, other.fromBinary(kryo.toBinary(msg)));
    // another order gives other ids (which is why every node needs the same list)
    Config reordered =
        ConfigFactory.parseString(
            "troupe.serialization.kryo.classes ="
                + " [\"dev.troupe.persistence.KryoSerializerTest$Step\","
                + " \"dev.troupe.persistence.KryoSerializerTest$Shape\"]");
    KryoSerializer swapped = new KryoSerializer(extended(), reordered);
    assertTrue(!Arrays.equals(kryo.toBinary(msg), swapped.toBinary(msg)));
  }

  @Test
  void unknownIdsTruncationAndTrailingBytesAreClearErrors() {
    byte[] good = kryo.toBinary(new Step(7, null, List.of("a"), Map.of(), null, null, tensor(1)));
    IllegalArgumentException truncated =
        assertThrows(
            IllegalArgumentException.class,
            () -> kryo.fromBinary(Arrays.copyOf(good, good.length / 2)));
    assertTrue(truncated.getMessage().startsWith("cannot read a cluster message"));
    byte[] unknownId = {(byte) 0xF0, (byte) 0x3E}; // varint id 8000 + 2
    IllegalArgumentException unknown =
        assertThrows(IllegalArgumentException.class, () -> kryo.fromBinary(unknownId));
    assertTrue(unknown.getMessage().contains("unregistered class ID"), unknown.getMessage());
    byte[] name = {1, 'x'}; // Kryo's "class name follows" marker
    IllegalArgumentException byName =
        assertThrows(IllegalArgumentException.class, () -> kryo.fromBinary(name));
    assertTrue(byName.getMessage().contains("class name"), byName.getMessage());
    byte[] longer = Arrays.copyOf(good, good.length + 3);
    IllegalArgumentException trailing =
        assertThrows(IllegalArgumentException.class, () -> kryo.fromBinary(longer));
    assertTrue(trailing.getMessage().contains("3 bytes left over"), trailing.getMessage());
  }

  @Test
  void moduleBlocksHaveFixedIdsAndClashesAreNamed() {
    String shape = "\"dev.troupe.persistence.KryoSerializerTest$Shape\"";
    String step = "\"dev.troupe.persistence.KryoSerializerTest$Step\"";
    Config ab =
        ConfigFactory.parseString(
            "troupe.serialization.kryo.blocks { a { first-id = 2000, classes = ["
                + shape
                + "] }, b { first-id = 3000, classes = ["
                + step
                + "] } }");
    Config ba =
        ConfigFactory.parseString(
            "troupe.serialization.kryo.blocks { b { first-id = 3000, classes = ["
                + step
                + "] }, a { first-id = 2000, classes = ["
                + shape
                + "] } }");
    Shape msg = new Shape("w", new long[] {5});
    byte[] bytes = new KryoSerializer(extended(), ab).toBinary(msg);
    assertArrayEquals(bytes, new KryoSerializer(extended(), ba).toBinary(msg));
    assertEquals(msg, new KryoSerializer(extended(), ba).fromBinary(bytes));
    Config clash =
        ConfigFactory.parseString(
            "troupe.serialization.kryo.blocks { a { first-id = 2000, classes = ["
                + shape
                + "] }, b { first-id = 2000, classes = ["
                + step
                + "] } }");
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> new KryoSerializer(extended(), clash));
    assertTrue(e.getMessage().contains("registration id 2000"), e.getMessage());
  }

  @Test
  void aMissingConfiguredClassIsNamed() {
    Config bad =
        ConfigFactory.parseString("troupe.serialization.kryo.classes = [\"no.such.Message\"]");
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> new KryoSerializer(extended(), bad));
    assertTrue(e.getMessage().contains("classes[0]"), e.getMessage());
    assertTrue(e.getMessage().contains("no.such.Message"), e.getMessage());
  }

  @Test
  void tensorBytesAreStatedAndChecked() {
    TensorBytes t = tensor(1);
    assertEquals(1 << 19, t.elements());
    assertSame(t.getClass(), roundTrip(t).getClass());
    assertEquals(t, roundTrip(t));
    assertTrue(
        assertThrows(
                IllegalArgumentException.class,
                () -> new TensorBytes("F32", new long[] {2, 3}, new byte[20]))
            .getMessage()
            .contains("needs 24 bytes, got 20"));
    assertTrue(
        assertThrows(
                IllegalArgumentException.class,
                () -> new TensorBytes("Q8", new long[0], new byte[1]))
            .getMessage()
            .contains("'Q8'"));
    assertTrue(
        assertThrows(
                IllegalArgumentException.class,
                () -> new TensorBytes("U8", new long[] {-1}, new byte[0]))
            .getMessage()
            .contains("negative"));
    assertEquals(
        new TensorBytes("U8", new long[] {2}, new byte[] {1, 2}).hashCode(),
        new TensorBytes("U8", new long[] {2}, new byte[] {1, 2}).hashCode());
  }
}
