package dev.troupe.cli;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Options of one subcommand: {@code --name value} pairs and bare {@code --flag}s. Every option
 * given must be known to the command; unknown ones and missing values are usage errors.
 */
final class Args {
  private final String command;
  private final Map<String, String> values = new HashMap<>();
  private final Set<String> flags = new HashSet<>();

  private Args(String command) {
    this.command = command;
  }

  /** Parses {@code args} knowing which names take a value and which are flags. */
  static Args parse(String command, List<String> args, Set<String> valued, Set<String> flagNames) {
    Args a = new Args(command);
    for (int i = 0; i < args.size(); i++) {
      String arg = args.get(i);
      if (!arg.startsWith("--"))
        throw new UsageException(command + ": unexpected argument '" + arg + "'");
      String name = arg.substring(2);
      String inline = null;
      int eq = name.indexOf('=');
      if (eq >= 0) {
        inline = name.substring(eq + 1);
        name = name.substring(0, eq);
      }
      if (flagNames.contains(name) && inline == null) {
        a.flags.add(name);
      } else if (valued.contains(name)) {
        String v = inline;
        if (v == null) {
          if (i + 1 >= args.size())
            throw new UsageException(command + ": --" + name + " needs a value");
          v = args.get(++i);
        }
        if (a.values.put(name, v) != null)
          throw new UsageException(command + ": --" + name + " given twice");
      } else {
        throw new UsageException(command + ": unknown option --" + name);
      }
    }
    return a;
  }

  String require(String name) {
    String v = values.get(name);
    if (v == null) throw new UsageException(command + ": --" + name + " is required");
    return v;
  }

  String get(String name, String dflt) {
    return values.getOrDefault(name, dflt);
  }

  boolean has(String name) {
    return values.containsKey(name) || flags.contains(name);
  }

  Path path(String name) {
    return Path.of(require(name));
  }

  int intValue(String name, int dflt, int min) {
    String v = values.get(name);
    if (v == null) return dflt;
    try {
      int n = Integer.parseInt(v.trim());
      if (n < min)
        throw new UsageException(
            command + ": --" + name + " must be at least " + min + ", got " + v);
      return n;
    } catch (NumberFormatException e) {
      throw new UsageException(command + ": --" + name + " must be an integer, got '" + v + "'");
    }
  }

  long longValue(String name, long dflt) {
    String v = values.get(name);
    if (v == null) return dflt;
    try {
      return Long.parseLong(v.trim());
    } catch (NumberFormatException e) {
      throw new UsageException(command + ": --" + name + " must be an integer, got '" + v + "'");
    }
  }
}
