package dev.troupe.persistence;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.KryoException;
import com.esotericsoftware.kryo.Serializer;
import com.esotericsoftware.kryo.io.Input;
import com.esotericsoftware.kryo.io.Output;
import com.esotericsoftware.kryo.serializers.CollectionSerializer;
import com.esotericsoftware.kryo.serializers.MapSerializer;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.ToIntFunction;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.serialization.Serialization;

/**
 * The Kryo serializers {@link KryoSerializer} installs for what every message may carry: actor
 * references as their paths, UUIDs, immutable lists, sets and maps, and length checks in front of
 * Kryo's own array, string, collection and map serializers. Every length read off the wire is
 * checked against the bytes left in the message before anything is allocated, so a corrupt or
 * hostile length fails as a {@link KryoException} naming what it was the length of.
 */
final class WireSerializers {
  private WireSerializers() {}

  /**
   * {@code n}, when the rest of the message can hold {@code n} items of at least one byte each;
   * else a {@link KryoException} saying so (a corrupt length must not allocate gigabytes).
   */
  static int fits(int n, Input input, String what) {
    int left = input.limit() - input.position();
    if (n < 0 || n > left) {
      throw new KryoException(
          what + " of length " + n + " cannot fit in the " + left + " bytes left of the message");
    }
    return n;
  }

  /**
   * The char count of the string at the input's position in Kryo's format: -1 for null, 0 for ASCII
   * (its end is marked in the bytes, nothing is allocated ahead).
   */
  static int stringLength(Input in) {
    return in.readVarIntFlag() ? in.readVarIntFlag(true) - 1 : 0;
  }

  /** Reads a string written by {@link Output#writeString}, its length checked first. */
  static String readString(Input input) {
    int start = input.position();
    int n = stringLength(input); // -1 for null
    if (n > 0) fits(n, input, "string");
    input.setPosition(start);
    return input.readString();
  }

  /**
   * Wraps a serializer whose data starts with a length: reads the length, checks that it {@link
   * #fits}, rewinds and lets the wrapped serializer read as usual. The bytes are unchanged.
   */
  static final class LengthChecked<T> extends Serializer<T> {
    private final Serializer<T> inner;
    private final ToIntFunction<Input> length;
    private final String what;

    LengthChecked(Serializer<T> inner, ToIntFunction<Input> length, String what) {
      super(inner.getAcceptsNull(), inner.isImmutable());
      this.inner = inner;
      this.length = length;
      this.what = what;
    }

    @Override
    public void write(Kryo kryo, Output output, T object) {
      inner.write(kryo, output, object);
    }

    @Override
    public T read(Kryo kryo, Input input, Class<? extends T> type) {
      int start = input.position();
      int n = length.applyAsInt(input); // -1 for null
      if (n > 0) fits(n, input, what);
      input.setPosition(start);
      return inner.read(kryo, input, type);
    }

    @Override
    public T copy(Kryo kryo, T original) {
      return inner.copy(kryo, original);
    }
  }

  /** Kryo's collection serializer, its size checked before the collection is made. */
  @SuppressWarnings("rawtypes")
  static final class CheckedCollectionSerializer
      extends CollectionSerializer<java.util.Collection> {
    @Override
    protected java.util.Collection create(
        Kryo kryo, Input input, Class<? extends java.util.Collection> type, int size) {
      return super.create(kryo, input, type, fits(size, input, type.getName()));
    }
  }

  /** Kryo's map serializer, its size checked before the map is made. */
  @SuppressWarnings("rawtypes")
  static final class CheckedMapSerializer extends MapSerializer<Map> {
    @Override
    protected Map create(Kryo kryo, Input input, Class<? extends Map> type, int size) {
      return super.create(kryo, input, type, fits(size, input, type.getName()));
    }
  }

  static final class ClassicRefSerializer extends Serializer<ActorRef> {
    private final ExtendedActorSystem system;

    ClassicRefSerializer(ExtendedActorSystem system) {
      this.system = system;
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, ActorRef ref) {
      output.writeString(Serialization.serializedActorPath(ref));
    }

    @Override
    public ActorRef read(Kryo kryo, Input input, Class<? extends ActorRef> type) {
      return system.provider().resolveActorRef(readString(input));
    }
  }

  @SuppressWarnings("rawtypes")
  static final class TypedRefSerializer extends Serializer<org.apache.pekko.actor.typed.ActorRef> {
    private final ActorRefResolver resolver;

    TypedRefSerializer(ActorRefResolver resolver) {
      this.resolver = resolver;
      setImmutable(true);
    }

    @Override
    @SuppressWarnings("unchecked")
    public void write(Kryo kryo, Output output, org.apache.pekko.actor.typed.ActorRef ref) {
      output.writeString(resolver.toSerializationFormat(ref));
    }

    @Override
    public org.apache.pekko.actor.typed.ActorRef read(
        Kryo kryo, Input input, Class<? extends org.apache.pekko.actor.typed.ActorRef> type) {
      return resolver.resolveActorRef(readString(input));
    }
  }

  static final class UuidSerializer extends Serializer<UUID> {
    UuidSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, UUID id) {
      output.writeLong(id.getMostSignificantBits());
      output.writeLong(id.getLeastSignificantBits());
    }

    @Override
    public UUID read(Kryo kryo, Input input, Class<? extends UUID> type) {
      return new UUID(input.readLong(), input.readLong());
    }
  }

  /** Reads a size written by a collection serializer, refusing nonsense before allocating. */
  static int size(Input input) {
    return fits(input.readVarInt(true), input, "collection");
  }

  /**
   * {@code List.of(items)}, or, when an item is null (lists from {@code Stream.toList()} may hold
   * nulls), the same kind of unmodifiable list that {@code Stream.toList()} makes.
   */
  static java.util.Collection<Object> immutableList(Object[] items) {
    for (Object item : items) {
      if (item == null) return java.util.Arrays.stream(items).toList();
    }
    return List.of(items);
  }

  /** {@code List.of}/{@code Set.of} collections: the elements, rebuilt through {@code make}. */
  @SuppressWarnings("rawtypes")
  static final class ImmutableCollectionSerializer extends Serializer<java.util.Collection> {
    private final java.util.function.Function<Object[], java.util.Collection> make;

    ImmutableCollectionSerializer(
        java.util.function.Function<Object[], java.util.Collection> make) {
      this.make = make;
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, java.util.Collection items) {
      output.writeVarInt(items.size(), true);
      for (Object e : items) kryo.writeClassAndObject(output, e);
    }

    @Override
    public java.util.Collection read(
        Kryo kryo, Input input, Class<? extends java.util.Collection> type) {
      Object[] items = new Object[size(input)];
      for (int i = 0; i < items.length; i++) items[i] = kryo.readClassAndObject(input);
      return make.apply(items);
    }
  }

  @SuppressWarnings({"rawtypes", "unchecked"})
  static final class ImmutableMapSerializer extends Serializer<Map> {
    ImmutableMapSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, Map map) {
      output.writeVarInt(map.size(), true);
      for (Object o : map.entrySet()) {
        Map.Entry e = (Map.Entry) o;
        kryo.writeClassAndObject(output, e.getKey());
        kryo.writeClassAndObject(output, e.getValue());
      }
    }

    @Override
    public Map read(Kryo kryo, Input input, Class<? extends Map> type) {
      int n = size(input);
      Map.Entry[] entries = new Map.Entry[n];
      for (int i = 0; i < n; i++) {
        Object k = kryo.readClassAndObject(input);
        Object v = kryo.readClassAndObject(input);
        entries[i] = Map.entry(k, v);
      }
      return Map.ofEntries(entries);
    }
  }
}
