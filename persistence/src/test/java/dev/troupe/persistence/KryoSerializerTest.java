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

/**
 * {@link KryoSerializer} inside a real typed actor system configured as the runtime configures it
 * (this module's {@code reference.conf} plus a list of test messages).
 */
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

  /** Listed itself, but holds a record that is not. */
  record HoldsUnlisted(Inner inner) implements ClusterMessage {}

  record Inner(int y) {}

  record Names(List<String> names) implements ClusterMessage {}

  private static final String CLASSES =
      """
      troupe.serialization.kryo.classes = [
        "dev.troupe.persistence.KryoSerializerTest$Shape",
        "dev.troupe.persistence.KryoSerializerTest$Step",
        "dev.troupe.persistence.KryoSerializerTest$Hello",
        "dev.troupe.persistence.KryoSerializerTest$ClassicHello",
        "dev.troupe.persistence.KryoSerializerTest$HoldsUnlisted",
        "dev.troupe.persistence.KryoSerializerTest$Names"
      ]
      """;

  private static org.apache.pekko.actor.typed.ActorSystem<Void> typed;
  private static org.apache.pekko.actor.ActorSystem system;
  private static KryoSerializer kryo;

  @BeforeAll
  static void start() {
    Config config =
        ConfigFactory.parseString(CLASSES + "\npekko.loglevel = WARNING")
            .withFallback(ConfigFactory.load());
    typed = org.apache.pekko.actor.typed.ActorSystem.create(Behaviors.empty(), "kryo-test", config);
    system = Adapter.toClassic(typed);
    kryo = new KryoSerializer(extended());
  }

  private static ExtendedActorSystem extended() {
    return (ExtendedActorSystem) system;
  }

  @AfterAll
  static void stop() throws Exception {
    typed.terminate();
    typed.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
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
        typed.systemActorOf(
            Behaviors.receiveMessage(
                (String s) -> {
                  got.complete(s);
                  return Behaviors.same();
                }),
            "target",
            org.apache.pekko.actor.typed.Props.empty());
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
    // an unlisted record inside a listed one: the message names the inner class
    IllegalArgumentException inner =
        assertThrows(
            IllegalArgumentException.class, () -> kryo.toBinary(new HoldsUnlisted(new Inner(3))));
    assertTrue(
        inner.getMessage().contains("Class is not registered: " + Inner.class.getName()),
        inner.getMessage());
    assertTrue(inner.getMessage().contains(KryoSerializer.CLASSES_KEY), inner.getMessage());
  }

  @Test
  void listsFromStreamToListMayHoldNulls() {
    List<String> withNull = java.util.stream.Stream.of("a", null, "b").toList();
    Names back = (Names) roundTrip(new Names(withNull));
    assertEquals(withNull, back.names());
    assertThrows(UnsupportedOperationException.class, () -> back.names().add("c"));
    // and the rebuilt list can be sent on
    assertEquals(withNull, ((Names) roundTrip(back)).names());
  }

  /** {@code prefix} (bytes of an empty value, its last byte dropped) followed by {@code tail}. */
  private static byte[] splice(byte[] emptyValue, int... tail) {
    byte[] out = Arrays.copyOf(emptyValue, emptyValue.length - 1 + tail.length);
    for (int i = 0; i < tail.length; i++) out[emptyValue.length - 1 + i] = (byte) tail[i];
    return out;
  }

  @Test
  void corruptLengthsAreRefusedBeforeAllocating() {
    // a varint of 2^31 - 1 where the length of a long[] belongs
    byte[] array = splice(kryo.toBinary(new long[0]), 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 2, 4);
    IllegalArgumentException a =
        assertThrows(IllegalArgumentException.class, () -> kryo.fromBinary(array));
    assertTrue(a.getMessage().contains("long array of length"), a.getMessage());
    assertTrue(a.getMessage().contains("cannot fit in the 2 bytes left"), a.getMessage());
    // a UTF-8 string claiming about 2^30 chars
    byte[] string = splice(kryo.toBinary(""), 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 'x');
    IllegalArgumentException s =
        assertThrows(IllegalArgumentException.class, () -> kryo.fromBinary(string));
    assertTrue(s.getMessage().contains("string of length"), s.getMessage());
    // an ArrayList and a HashMap claiming 2^31 - 2 entries
    for (Object empty : List.of(new ArrayList<>(), new HashMap<>())) {
      byte[] bytes = splice(kryo.toBinary(empty), 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 3);
      IllegalArgumentException c =
          assertThrows(IllegalArgumentException.class, () -> kryo.fromBinary(bytes));
      assertTrue(c.getMessage().contains("cannot fit in the"), c.getMessage());
    }
    // List.of lists carry their own size check
    byte[] list = splice(kryo.toBinary(List.of()), 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 3);
    IllegalArgumentException l =
        assertThrows(IllegalArgumentException.class, () -> kryo.fromBinary(list));
    assertTrue(l.getMessage().contains("collection of length"), l.getMessage());
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
    // varint 8048: registration id 8046 (+2 for Kryo's null and class-name markers)
    byte[] unknownId = {(byte) 0xF0, (byte) 0x3E};
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
  void tensorBytesRoundTripAsTensorBytes() {
    TensorBytes t = tensor(1);
    Object back = roundTrip(t);
    assertSame(TensorBytes.class, back.getClass());
    assertEquals(t, back);
    assertArrayEquals(t.data(), ((TensorBytes) back).data());
  }

  @Test
  void tensorChecksRunOnArrival() {
    // a valid tensor's bytes with one data byte cut out: the record is rebuilt through its
    // canonical constructor, whose check names the mismatch
    byte[] good = kryo.toBinary(new TensorBytes("U8", new long[] {3}, new byte[] {7, 8, 9}));
    int data = indexOf(good, new byte[] {4, 7, 8, 9}); // varint(3 + 1), then the bytes
    assertTrue(data >= 0, Arrays.toString(good));
    byte[] bad = new byte[good.length - 1];
    System.arraycopy(good, 0, bad, 0, data + 3);
    System.arraycopy(good, data + 4, bad, data + 3, good.length - data - 4);
    bad[data] = 3; // two bytes follow
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> kryo.fromBinary(bad));
    assertTrue(e.getMessage().contains("needs 3 bytes, got 2"), e.getMessage());
  }

  private static int indexOf(byte[] bytes, byte[] part) {
    for (int i = 0; i + part.length <= bytes.length; i++) {
      if (Arrays.equals(Arrays.copyOfRange(bytes, i, i + part.length), part)) return i;
    }
    return -1;
  }
}
