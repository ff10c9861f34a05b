package dev.troupe.persistence;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.KryoException;
import com.esotericsoftware.kryo.Registration;
import com.esotericsoftware.kryo.Serializer;
import com.esotericsoftware.kryo.io.Input;
import com.esotericsoftware.kryo.io.Output;
import com.esotericsoftware.kryo.serializers.CollectionSerializer;
import com.esotericsoftware.kryo.serializers.MapSerializer;
import com.esotericsoftware.kryo.util.DefaultClassResolver;
import com.esotericsoftware.kryo.util.Pool;
import com.typesafe.config.Config;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.function.Predicate;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.serialization.JSerializer;

/**
 * Pekko serializer for {@link ClusterMessage}s over Kryo 5 (io.altoo's Pekko Kryo serializer is not
 * available from the project's Maven mirror, and this one is small).
 *
 * <ul>
 *   <li>Registration is required: a class that is neither built in (arrays of primitives, strings,
 *       ArrayList/HashMap/LinkedHashMap/HashSet, UUID, immutable {@code List.of}/{@code
 *       Map.of}/{@code Set.of} collections, {@link TensorBytes}, actor refs) nor listed in {@code
 *       troupe.serialization.kryo.classes} is refused when written, with a message naming it.
 *       Nothing is ever instantiated from a class name read off the wire.
 *   <li>Registration ids are fixed: built-ins from {@value #BUILT_IN_IDS}, configured classes from
 *       {@value #CONFIGURED_IDS} in the order of the list. Nodes that share the configuration
 *       agree; add new classes at the end of the list.
 *   <li>Actor refs (classic and typed, any implementation class) are written as their serialization
 *       path and resolved on the receiving side, as Pekko's own serializers do.
 *   <li>Records use Kryo's record serializer (their canonical constructor runs, so their checks run
 *       on the receiving side too).
 *   <li>Bytes that are not a message this serializer wrote (unknown registration id, a class name
 *       instead of an id, truncated, trailing bytes, an array, string or collection length larger
 *       than the rest of the message) give an {@link IllegalArgumentException} saying so, never a
 *       huge allocation or a wrong object.
 * </ul>
 *
 * The serializers for the built-in types and the length checks are in {@link WireSerializers}.
 * Kryo instances are not thread-safe; each call borrows one from a pool.
 */
public final class KryoSerializer extends JSerializer {
  /** Pekko's id of this serializer (ids 0-40 are Pekko's own). */
  public static final int IDENTIFIER = 7301;

  /** The first registration id of the built-in classes. */
  public static final int BUILT_IN_IDS = 100;

  /** The first registration id of the classes listed in the configuration. */
  public static final int CONFIGURED_IDS = 1000;

  /** The configuration key listing the message classes, in registration order. */
  public static final String CLASSES_KEY = "troupe.serialization.kryo.classes";

  /**
   * The configuration key of the modules' own blocks: {@code <module> { first-id = N, classes =
   * [...] }}, each class registered at {@code first-id} plus its position. Fixed first ids keep
   * every message's id independent of the order in which the modules' {@code reference.conf} files
   * are merged (ids of journaled events must never change).
   */
  public static final String BLOCKS_KEY = "troupe.serialization.kryo.blocks";

  /** The lowest first id a module block may use. */
  public static final int BLOCK_IDS = 2000;

  private final ExtendedActorSystem system;
  private final java.util.SortedMap<Integer, Class<?>> configured;
  private final Pool<Kryo> pool;

  public KryoSerializer(ExtendedActorSystem system) {
    this(system, system.settings().config());
  }

  /** A serializer whose class list comes from {@code config} rather than the system's. */
  public KryoSerializer(ExtendedActorSystem system, Config config) {
    this.system = system;
    ClassLoader loader = system.dynamicAccess().classLoader();
    this.configured = new java.util.TreeMap<>();
    List<Class<?>> listed = classes(config, CLASSES_KEY, loader);
    for (int i = 0; i < listed.size(); i++) configured.put(CONFIGURED_IDS + i, listed.get(i));
    if (config.hasPath(BLOCKS_KEY)) {
      Config blocks = config.getConfig(BLOCKS_KEY);
      for (String name : new java.util.TreeSet<>(blocks.root().keySet())) {
        String key = BLOCKS_KEY + "." + name;
        int first;
        try {
          first = blocks.getConfig(name).getInt("first-id");
        } catch (com.typesafe.config.ConfigException e) {
          throw new IllegalArgumentException(key + ".first-id: " + e.getMessage(), e);
        }
        if (first < BLOCK_IDS) {
          throw new IllegalArgumentException(
              key + ".first-id = " + first + ": module blocks start at " + BLOCK_IDS + " or above");
        }
        List<Class<?>> classes = classes(config, key + ".classes", loader);
        for (int i = 0; i < classes.size(); i++) {
          Class<?> clash = configured.put(first + i, classes.get(i));
          if (clash != null) {
            throw new IllegalArgumentException(
                key
                    + ": registration id "
                    + (first + i)
                    + " of "
                    + classes.get(i).getName()
                    + " is already taken by "
                    + clash.getName());
          }
        }
      }
    }
    this.pool =
        new Pool<>(true, false, 16) {
          @Override
          protected Kryo create() {
            return newKryo();
          }
        };
  }

  private static List<Class<?>> classes(Config config, String key, ClassLoader loader) {
    List<Class<?>> out = new ArrayList<>();
    if (!config.hasPath(key)) return out;
    List<String> names;
    try {
      names = config.getStringList(key);
    } catch (com.typesafe.config.ConfigException e) {
      throw new IllegalArgumentException(
          key + " must be a list of class names: " + e.getMessage(), e);
    }
    for (int i = 0; i < names.size(); i++) {
      try {
        out.add(Class.forName(names.get(i), false, loader));
      } catch (ClassNotFoundException e) {
        throw new IllegalArgumentException(
            key + "[" + i + "]: class '" + names.get(i) + "' not found", e);
      }
    }
    return out;
  }

  @Override
  public int identifier() {
    return IDENTIFIER;
  }

  @Override
  public boolean includeManifest() {
    return false;
  }

  @Override
  public byte[] toBinary(Object o) {
    Kryo kryo = pool.obtain();
    try (Output out = new Output(256, -1)) {
      kryo.writeClassAndObject(out, o);
      byte[] bytes = out.toBytes();
      pool.free(kryo); // only an instance that finished cleanly goes back
      return bytes;
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(
          "cannot serialize a "
              + o.getClass().getName()
              + " for the cluster: "
              + writeProblem(e)
              + " (message classes must be listed in "
              + CLASSES_KEY
              + " or a module block)",
          e);
    }
  }

  @Override
  public Object fromBinaryJava(byte[] bytes, Class<?> manifest) {
    Kryo kryo = pool.obtain();
    Object o;
    int read;
    try (Input in = new Input(bytes)) {
      o = kryo.readClassAndObject(in);
      read = in.position();
    } catch (RuntimeException e) {
      // Kryo's errors, and the checks of records rebuilt from the bytes (e.g. TensorBytes); the
      // failed instance is dropped: its state after an exception is unknown
      throw new IllegalArgumentException(
          "cannot read a cluster message (" + bytes.length + " bytes): " + readProblem(e), e);
    }
    pool.free(kryo);
    if (read != bytes.length) {
      throw new IllegalArgumentException(
          "cannot read a cluster message: "
              + (bytes.length - read)
              + " bytes left over after a "
              + (o == null ? "null" : o.getClass().getName())
              + " ("
              + bytes.length
              + " bytes in all)");
    }
    return o;
  }

  /**
   * The first line of Kryo's "Class is not registered: X" wherever it sits in the cause chain
   * (Kryo's record serializer wraps it when the class is nested), else the first line of {@code e}.
   */
  private static String writeProblem(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t.getMessage() != null && t.getMessage().startsWith("Class is not registered")) {
        return firstLine(t);
      }
    }
    return firstLine(e);
  }

  /**
   * What went wrong reading: the innermost cause's first line, since Kryo wraps what its record and
   * collection serializers throw (a record's own check, e.g. a {@link TensorBytes} whose data does
   * not match its shape, arrives inside an InvocationTargetException inside a KryoException).
   */
  private static String readProblem(Throwable e) {
    Throwable root = e;
    while (root.getCause() != null && root.getCause() != root) root = root.getCause();
    if (root == e) return firstLine(e);
    String what = root instanceof KryoException ? "" : root.getClass().getSimpleName() + ": ";
    return what + firstLine(root);
  }

  private static String firstLine(Throwable e) {
    String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    int nl = m.indexOf('\n');
    return nl < 0 ? m : m.substring(0, nl);
  }

  private Kryo newKryo() {
    FamilyClassResolver resolver = new FamilyClassResolver();
    Kryo kryo = new Kryo(resolver, null);
    kryo.setRegistrationRequired(true);
    kryo.setReferences(false);
    int id = BUILT_IN_IDS;
    for (Class<?> c :
        List.of(
            byte[].class,
            short[].class,
            int[].class,
            long[].class,
            float[].class,
            double[].class,
            boolean[].class,
            char[].class,
            String[].class,
            ArrayList.class,
            HashMap.class,
            LinkedHashMap.class,
            HashSet.class,
            TensorBytes.class)) {
      register(kryo, c, id++);
    }
    kryo.register(UUID.class, new WireSerializers.UuidSerializer(), id++);
    Class<?> list = List.of().getClass();
    kryo.register(
        list,
        new WireSerializers.ImmutableCollectionSerializer(WireSerializers::immutableList),
        id++);
    resolver.family(c -> c.getName().startsWith("java.util.ImmutableCollections$List"), list);
    Class<?> map = Map.of().getClass();
    kryo.register(map, new WireSerializers.ImmutableMapSerializer(), id++);
    resolver.family(c -> c.getName().startsWith("java.util.ImmutableCollections$Map"), map);
    Class<?> set = Set.of().getClass();
    kryo.register(set, new WireSerializers.ImmutableCollectionSerializer(Set::of), id++);
    resolver.family(c -> c.getName().startsWith("java.util.ImmutableCollections$Set"), set);
    kryo.register(ActorRef.class, new WireSerializers.ClassicRefSerializer(system), id++);
    resolver.family(ActorRef.class::isAssignableFrom, ActorRef.class);
    kryo.register(
        org.apache.pekko.actor.typed.ActorRef.class,
        new WireSerializers.TypedRefSerializer(ActorRefResolver.get(Adapter.toTyped(system))),
        id++);
    resolver.family(
        org.apache.pekko.actor.typed.ActorRef.class::isAssignableFrom,
        org.apache.pekko.actor.typed.ActorRef.class);
    for (Map.Entry<Integer, Class<?>> e : configured.entrySet()) {
      register(kryo, e.getValue(), e.getKey());
    }
    Registration string = kryo.getRegistration(String.class);
    string.setSerializer(
        new WireSerializers.LengthChecked<>(
            string.getSerializer(), WireSerializers::stringLength, "string"));
    return kryo;
  }

  /**
   * Registers {@code c} at {@code id}; arrays, and collections and maps on Kryo's generic
   * serializers, get their length checked against the message before anything is allocated.
   */
  @SuppressWarnings({"rawtypes", "unchecked"})
  private static void register(Kryo kryo, Class<?> c, int id) {
    Registration r = kryo.register(c, id);
    Serializer s = r.getSerializer();
    if (c.isArray()) {
      r.setSerializer(
          new WireSerializers.LengthChecked<>(
              s, in -> in.readVarInt(true) - 1, c.getComponentType().getSimpleName() + " array"));
    } else if (s.getClass() == CollectionSerializer.class) {
      r.setSerializer(new WireSerializers.CheckedCollectionSerializer());
    } else if (s.getClass() == MapSerializer.class) {
      r.setSerializer(new WireSerializers.CheckedMapSerializer());
    }
  }

  /**
   * Kryo's resolver, plus families: a class without its own registration that belongs to a family
   * (every ActorRef implementation, every immutable list class) uses the family's registration.
   */
  private static final class FamilyClassResolver extends DefaultClassResolver {
    private final List<Map.Entry<Predicate<Class<?>>, Class<?>>> families = new ArrayList<>();

    void family(Predicate<Class<?>> member, Class<?> registered) {
      families.add(Map.entry(member, registered));
    }

    @Override
    public Registration getRegistration(Class type) {
      Registration r = super.getRegistration(type);
      if (r != null) return r;
      for (Map.Entry<Predicate<Class<?>>, Class<?>> f : families) {
        if (f.getKey().test(type)) return super.getRegistration(f.getValue());
      }
      return null;
    }

    /** Class names on the wire are refused outright: no class is ever looked up by name. */
    @Override
    protected Registration readName(Input input) {
      throw new KryoException("a class name on the wire (only registered classes are accepted)");
    }
  }
}
