package dev.troupe.pipeline.data.chat;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** Jinja's operators, tests, filters and string methods on template values. */
final class Operators {
  private final SourceText source;

  Operators(SourceText source) {
    this.source = source;
  }

  /** {@code target.key} or {@code target[key]}; missing keys give {@link Values#UNDEFINED}. */
  Object item(Object target, Object key, int pos) {
    if (target instanceof Map<?, ?> m) {
      Object k = key instanceof String ? key : Values.str(key);
      return m.containsKey(k) ? m.get(k) : Values.UNDEFINED;
    }
    if (key instanceof Long n && (target instanceof List<?> || target instanceof String)) {
      int size = size(target);
      long i = n < 0 ? n + size : n;
      if (i < 0 || i >= size) {
        return Values.UNDEFINED;
      }
      return target instanceof List<?> l
          ? l.get((int) i)
          : String.valueOf(((String) target).charAt((int) i));
    }
    return Values.UNDEFINED;
  }

  Object slice(Object target, Object start, Object stop, int pos) {
    if (!(target instanceof List<?>) && !(target instanceof String)) {
      throw source.error(pos, "cannot slice a " + Values.typeName(target));
    }
    int size = size(target);
    int from = bound(start, 0, size, pos);
    int to = Math.max(from, bound(stop, size, size, pos));
    return target instanceof List<?> l
        ? new ArrayList<>(l.subList(from, to))
        : ((String) target).substring(from, to);
  }

  private int bound(Object value, int fallback, int size, int pos) {
    if (value == null || value == Values.UNDEFINED) {
      return fallback;
    }
    if (!(value instanceof Long n)) {
      throw source.error(pos, "slice bounds must be integers");
    }
    long i = n < 0 ? n + size : n;
    return (int) Math.max(0, Math.min(size, i));
  }

  Object binary(String op, Object a, Object b, int pos) {
    switch (op) {
      case "==":
        return Values.equal(a, b);
      case "!=":
        return !Values.equal(a, b);
      case "~":
        return Values.str(a) + Values.str(b);
      case "in":
        return contains(b, a, pos);
      case "not in":
        return !contains(b, a, pos);
      default:
        break;
    }
    if (op.equals("+") && a instanceof String x && b instanceof String y) {
      return x + y;
    }
    if (op.equals("+") && a instanceof List<?> x && b instanceof List<?> y) {
      List<Object> joined = new ArrayList<>(x);
      joined.addAll(y);
      return joined;
    }
    if (a instanceof String x && b instanceof String y) {
      int c = x.compareTo(y);
      switch (op) {
        case "<":
          return c < 0;
        case ">":
          return c > 0;
        case "<=":
          return c <= 0;
        case ">=":
          return c >= 0;
        default:
          break;
      }
    }
    if (a instanceof Long x && b instanceof Long y) {
      switch (op) {
        case "+":
          return x + y;
        case "-":
          return x - y;
        case "*":
          return x * y;
        case "<":
          return x < y;
        case ">":
          return x > y;
        case "<=":
          return x <= y;
        case ">=":
          return x >= y;
        case "%", "//", "/":
          if (y == 0) {
            throw source.error(pos, "division by zero");
          }
          return op.equals("%") ? Math.floorMod(x, y) : Math.floorDiv(x, y);
        default:
          break;
      }
    }
    throw source.error(
        pos,
        "unsupported operand types for "
            + op
            + ": "
            + Values.typeName(a)
            + " and "
            + Values.typeName(b));
  }

  private boolean contains(Object container, Object item, int pos) {
    if (container instanceof String s) {
      if (!(item instanceof String t)) {
        throw source.error(pos, "'in <string>' needs a string on the left");
      }
      return s.contains(t);
    }
    if (container instanceof List<?> l) {
      return l.stream().anyMatch(x -> Values.equal(x, item));
    }
    if (container instanceof Map<?, ?> m) {
      return m.containsKey(item);
    }
    if (container == Values.UNDEFINED || container == null) {
      return false;
    }
    throw source.error(pos, "cannot use 'in' on a " + Values.typeName(container));
  }

  boolean test(Object v, String test, int pos) {
    return switch (test) {
      case "defined" -> v != Values.UNDEFINED;
      case "undefined" -> v == Values.UNDEFINED;
      case "none" -> v == null;
      case "string" -> v instanceof String;
      case "number", "integer" -> v instanceof Long;
      case "boolean" -> v instanceof Boolean;
      case "true" -> Boolean.TRUE.equals(v);
      case "false" -> Boolean.FALSE.equals(v);
      case "mapping" -> v instanceof Map;
      case "sequence", "iterable" -> v instanceof List || v instanceof String || v instanceof Map;
      default -> throw source.error(pos, "unknown test '" + test + "'");
    };
  }

  Object filter(Object v, String name, List<Object> args, int pos) {
    return switch (name) {
      case "trim" -> Values.str(v).strip();
      case "upper" -> Values.str(v).toUpperCase(Locale.ROOT);
      case "lower" -> Values.str(v).toLowerCase(Locale.ROOT);
      case "string" -> Values.str(v);
      case "tojson" -> Values.json(v);
      case "length", "count" -> {
        if (v instanceof List || v instanceof String || v instanceof Map) {
          yield (long) size(v);
        }
        throw source.error(pos, "a " + Values.typeName(v) + " has no length");
      }
      case "default", "d" -> v == Values.UNDEFINED && !args.isEmpty() ? args.get(0) : v;
      default -> throw source.error(pos, "unknown filter '" + name + "'");
    };
  }

  Object method(Object target, String name, List<Object> args, int pos) {
    if (target instanceof String s) {
      switch (name) {
        case "strip":
          return s.strip();
        case "lstrip":
          return s.stripLeading();
        case "rstrip":
          return s.stripTrailing();
        case "upper":
          return s.toUpperCase(Locale.ROOT);
        case "lower":
          return s.toLowerCase(Locale.ROOT);
        case "startswith":
          return !args.isEmpty() && s.startsWith(Values.str(args.get(0)));
        case "endswith":
          return !args.isEmpty() && s.endsWith(Values.str(args.get(0)));
        default:
          break;
      }
    }
    if (target instanceof Map<?, ?> m && name.equals("get") && !args.isEmpty()) {
      Object found = item(m, args.get(0), pos);
      return found != Values.UNDEFINED ? found : args.size() > 1 ? args.get(1) : null;
    }
    throw source.error(pos, "unknown method '" + name + "' of a " + Values.typeName(target));
  }

  private static int size(Object v) {
    if (v instanceof List<?> l) {
      return l.size();
    }
    if (v instanceof Map<?, ?> m) {
      return m.size();
    }
    return ((String) v).length();
  }
}
