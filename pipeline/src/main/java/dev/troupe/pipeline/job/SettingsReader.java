package dev.troupe.pipeline.job;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigRenderOptions;
import com.typesafe.config.ConfigValue;
import com.typesafe.config.ConfigValueType;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.function.DoublePredicate;

/**
 * Typed, validated reads from a resolved job config whose keys are all known; every failure is a
 * {@link JobConfigException} naming the key and the value found.
 */
final class SettingsReader {
  private final Config config;
  private final Path file;

  SettingsReader(Config config, Path file) {
    this.config = config;
    this.file = file;
  }

  JobConfigException error(String key, String what) {
    return new JobConfigException(file, key, what);
  }

  /** "{@code <key>: <expected>, got <value as HOCON>}". */
  JobConfigException invalid(String key, String expected) {
    return error(key, expected + ", got " + render(key));
  }

  boolean isSet(String key) {
    return config.hasPath(key);
  }

  /** The type of the value at {@code key}, {@link ConfigValueType#NULL} where it is null. */
  ConfigValueType valueType(String key) {
    return isSet(key) ? config.getValue(key).valueType() : ConfigValueType.NULL;
  }

  /** The string at {@code key}, whose {@link #valueType} is STRING. */
  String string(String key) {
    return config.getString(key);
  }

  /** The keys of the object at {@code key}, whose {@link #valueType} is OBJECT. */
  Set<String> keys(String key) {
    return config.getObject(key).keySet();
  }

  /** An integer in [min, max]; quoted integers are accepted as HOCON's own getters do. */
  long integer(String key, long min, long max) throws JobConfigException {
    Long v = isSet(key) ? asLong(config.getValue(key).unwrapped()) : null;
    if (v == null || v < min || v > max) {
      String expected =
          min == 1
              ? "must be a positive integer"
              : min == 0
                  ? "must be a non-negative integer"
                  : min == Long.MIN_VALUE ? "must be an integer" : "must be an integer >= " + min;
      if (v != null && v > max) expected += " up to " + max;
      throw invalid(key, expected);
    }
    return v;
  }

  long integer(String key, long min) throws JobConfigException {
    return integer(key, min, Long.MAX_VALUE);
  }

  int smallInteger(String key, int min) throws JobConfigException {
    return (int) integer(key, min, Integer.MAX_VALUE);
  }

  /** A finite number accepted by {@code ok}, else "{@code <expected>, got ...}". */
  double number(String key, DoublePredicate ok, String expected) throws JobConfigException {
    Double v = isSet(key) ? asDouble(config.getValue(key).unwrapped()) : null;
    if (v == null || !ok.test(v)) throw invalid(key, expected);
    return v;
  }

  /** A list of finite numbers, each accepted by {@code ok}, of exactly {@code size} elements. */
  List<Double> numbers(String key, int size, DoublePredicate ok, String expected)
      throws JobConfigException {
    List<Double> out = new ArrayList<>();
    if (isSet(key) && config.getValue(key).unwrapped() instanceof List<?> list) {
      for (Object o : list) {
        Double v = asDouble(o);
        if (v == null || !ok.test(v)) throw invalid(key, expected);
        out.add(v);
      }
    }
    if (out.size() != size) throw invalid(key, expected);
    return out;
  }

  boolean bool(String key) throws JobConfigException {
    try {
      if (isSet(key)) return config.getBoolean(key);
    } catch (ConfigException.WrongType e) {
      // reported below with the value found
    }
    throw invalid(key, "must be true or false");
  }

  /** A path kept as written, or null where the key is null and not required. */
  Path path(String key, boolean required) throws JobConfigException {
    if (!isSet(key)) {
      if (required) throw error(key, "required");
      return null;
    }
    ConfigValue value = config.getValue(key);
    if (value.valueType() != ConfigValueType.STRING)
      throw invalid(key, "must be a path (a string)");
    String text = (String) value.unwrapped();
    if (text.isBlank()) throw invalid(key, "must be a non-empty path");
    try {
      return Path.of(text);
    } catch (InvalidPathException e) {
      throw invalid(key, "must be a valid path (" + e.getReason() + ")");
    }
  }

  /** One of {@code allowed} (lower case), matched case-insensitively; returned in lower case. */
  String choice(String key, List<String> allowed) throws JobConfigException {
    if (isSet(key) && config.getValue(key).unwrapped() instanceof String s) {
      String lower = s.trim().toLowerCase(Locale.ROOT);
      if (allowed.contains(lower)) return lower;
    }
    throw invalid(key, "must be one of " + String.join(", ", allowed));
  }

  /** An enum constant named case-insensitively. */
  <E extends Enum<E>> E enumValue(String key, Class<E> type) throws JobConfigException {
    List<String> names = new ArrayList<>();
    for (E e : type.getEnumConstants()) names.add(e.name().toLowerCase(Locale.ROOT));
    return Enum.valueOf(type, choice(key, names).toUpperCase(Locale.ROOT));
  }

  /** A list of strings (possibly empty). */
  List<String> strings(String key, String expected) throws JobConfigException {
    List<String> out = new ArrayList<>();
    if (isSet(key) && config.getValue(key).unwrapped() instanceof List<?> list) {
      for (Object o : list) {
        if (!(o instanceof String s)) throw invalid(key, expected);
        out.add(s);
      }
      return out;
    }
    throw invalid(key, expected);
  }

  /** The value at {@code key} as compact HOCON/JSON: {@code "sixteen"}, {@code 16}, {@code [1]}. */
  String render(String key) {
    return isSet(key) ? config.getValue(key).render(ConfigRenderOptions.concise()) : "null";
  }

  private static Long asLong(Object o) {
    if (o instanceof Integer || o instanceof Long) return ((Number) o).longValue();
    if (o instanceof Double d) {
      boolean whole = Double.isFinite(d) && d == Math.rint(d) && Math.abs(d) < 0x1p63;
      return whole ? d.longValue() : null;
    }
    if (o instanceof String s) {
      try {
        return Long.parseLong(s.trim());
      } catch (NumberFormatException e) {
        return null;
      }
    }
    return null;
  }

  private static Double asDouble(Object o) {
    double d;
    if (o instanceof Number n) {
      d = n.doubleValue();
    } else if (o instanceof String s) {
      try {
        d = Double.parseDouble(s.trim());
      } catch (NumberFormatException e) {
        return null;
      }
    } else {
      return null;
    }
    return Double.isFinite(d) ? d : null;
  }
}
