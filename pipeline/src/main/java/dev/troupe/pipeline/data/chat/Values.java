package dev.troupe.pipeline.data.chat;

import java.util.List;
import java.util.Map;

/** Jinja's view of template values: truth, text, equality and JSON. */
final class Values {
  /** The value of a name or key that does not exist: falsy, rendered as "". */
  static final Object UNDEFINED =
      new Object() {
        @Override
        public String toString() {
          return "Undefined";
        }
      };

  private Values() {}

  static boolean truthy(Object v) {
    if (v == null || v == UNDEFINED) {
      return false;
    }
    if (v instanceof Boolean b) {
      return b;
    }
    if (v instanceof Long n) {
      return n != 0;
    }
    if (v instanceof String s) {
      return !s.isEmpty();
    }
    if (v instanceof List<?> l) {
      return !l.isEmpty();
    }
    if (v instanceof Map<?, ?> m) {
      return !m.isEmpty();
    }
    return true;
  }

  /** The text {@code {{ v }}} writes. */
  static String str(Object v) {
    if (v == UNDEFINED) {
      return "";
    }
    if (v instanceof String s) {
      return s;
    }
    return repr(v);
  }

  /** Python's {@code repr}, as Jinja prints lists and dictionaries. */
  static String repr(Object v) {
    if (v == null) {
      return "None";
    }
    if (v == UNDEFINED) {
      return "";
    }
    if (v instanceof Boolean b) {
      return b ? "True" : "False";
    }
    if (v instanceof String s) {
      return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'";
    }
    if (v instanceof List<?> l) {
      StringBuilder out = new StringBuilder("[");
      for (int i = 0; i < l.size(); i++) {
        out.append(i > 0 ? ", " : "").append(repr(l.get(i)));
      }
      return out.append(']').toString();
    }
    if (v instanceof Map<?, ?> m) {
      StringBuilder out = new StringBuilder("{");
      String sep = "";
      for (Map.Entry<?, ?> e : m.entrySet()) {
        out.append(sep).append(repr(e.getKey())).append(": ").append(repr(e.getValue()));
        sep = ", ";
      }
      return out.append('}').toString();
    }
    return String.valueOf(v);
  }

  /** JSON as Python's {@code json.dumps(v, ensure_ascii=False)} writes it. */
  static String json(Object v) {
    if (v == null || v == UNDEFINED) {
      return "null";
    }
    if (v instanceof Boolean || v instanceof Long) {
      return v.toString();
    }
    if (v instanceof String s) {
      StringBuilder out = new StringBuilder("\"");
      for (char c : s.toCharArray()) {
        switch (c) {
          case '"' -> out.append("\\\"");
          case '\\' -> out.append("\\\\");
          case '\n' -> out.append("\\n");
          case '\r' -> out.append("\\r");
          case '\t' -> out.append("\\t");
          default -> {
            if (c < 0x20) {
              out.append(String.format("\\u%04x", (int) c));
            } else {
              out.append(c);
            }
          }
        }
      }
      return out.append('"').toString();
    }
    if (v instanceof List<?> l) {
      StringBuilder out = new StringBuilder("[");
      for (int i = 0; i < l.size(); i++) {
        out.append(i > 0 ? ", " : "").append(json(l.get(i)));
      }
      return out.append(']').toString();
    }
    if (v instanceof Map<?, ?> m) {
      StringBuilder out = new StringBuilder("{");
      String sep = "";
      for (Map.Entry<?, ?> e : m.entrySet()) {
        out.append(sep).append(json(String.valueOf(e.getKey()))).append(": ");
        out.append(json(e.getValue()));
        sep = ", ";
      }
      return out.append('}').toString();
    }
    return json(String.valueOf(v));
  }

  static boolean equal(Object a, Object b) {
    if (a == UNDEFINED || b == UNDEFINED) {
      return a == b;
    }
    if (a instanceof Boolean x && b instanceof Long y) {
      return (x ? 1L : 0L) == y;
    }
    if (a instanceof Long x && b instanceof Boolean y) {
      return x == (y ? 1L : 0L);
    }
    return a == null ? b == null : a.equals(b);
  }

  static String typeName(Object v) {
    if (v == null) {
      return "none";
    }
    if (v == UNDEFINED) {
      return "undefined";
    }
    if (v instanceof Long) {
      return "integer";
    }
    if (v instanceof List) {
      return "list";
    }
    if (v instanceof Map) {
      return "dict";
    }
    return v instanceof String ? "string" : v instanceof Boolean ? "boolean" : "object";
  }
}
