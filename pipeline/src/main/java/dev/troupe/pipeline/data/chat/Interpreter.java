package dev.troupe.pipeline.data.chat;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Runs a statement tree against variables, writing the output text. */
final class Interpreter {
  private final SourceText source;
  private final Deque<Map<String, Object>> scopes = new ArrayDeque<>();
  private final StringBuilder out = new StringBuilder();
  private final Operators operators;

  Interpreter(SourceText source, Map<String, Object> variables) {
    this.source = source;
    this.operators = new Operators(source);
    scopes.push(new HashMap<>(variables));
  }

  String run(List<Stmt> body) {
    execute(body);
    return out.toString();
  }

  private void execute(List<Stmt> body) {
    for (Stmt stmt : body) {
      switch (stmt) {
        case Stmt.Text t -> out.append(t.text());
        case Stmt.Output o -> out.append(Values.str(eval(o.expr())));
        case Stmt.Set s -> set(s);
        case Stmt.If i -> {
          List<Stmt> chosen = i.orElse();
          for (int b = 0; b < i.conditions().size(); b++) {
            if (Values.truthy(eval(i.conditions().get(b)))) {
              chosen = i.bodies().get(b);
              break;
            }
          }
          execute(chosen);
        }
        case Stmt.For f -> loop(f);
      }
    }
  }

  private void set(Stmt.Set s) {
    Object value = eval(s.value());
    if (s.attribute() == null) {
      scopes.peek().put(s.name(), value);
      return;
    }
    if (!(lookup(s.name()) instanceof Namespace ns)) {
      throw source.error(
          s.pos(), "'" + s.name() + "' is not a namespace; cannot set ." + s.attribute());
    }
    ns.put(s.attribute(), value);
  }

  /** What {@code namespace(...)} makes: the one mutable mapping, so loops can carry state out. */
  static final class Namespace extends LinkedHashMap<String, Object> {
    private static final long serialVersionUID = 1L;
  }

  private void loop(Stmt.For f) {
    Object iterable = eval(f.iterable());
    List<?> items;
    if (iterable instanceof List<?> l) {
      items = l;
    } else if (iterable instanceof Map<?, ?> m) {
      items = new ArrayList<>(m.keySet());
    } else if (iterable instanceof String s) {
      items = s.chars().mapToObj(c -> String.valueOf((char) c)).toList();
    } else if (iterable == Values.UNDEFINED || iterable == null) {
      items = List.of();
    } else {
      throw source.error(f.pos(), "cannot loop over a " + Values.typeName(iterable));
    }
    int n = items.size();
    for (int i = 0; i < n; i++) {
      Map<String, Object> loop = new LinkedHashMap<>();
      loop.put("index0", (long) i);
      loop.put("index", (long) i + 1);
      loop.put("revindex0", (long) (n - 1 - i));
      loop.put("revindex", (long) (n - i));
      loop.put("first", i == 0);
      loop.put("last", i == n - 1);
      loop.put("length", (long) n);
      loop.put("previtem", i > 0 ? items.get(i - 1) : Values.UNDEFINED);
      loop.put("nextitem", i < n - 1 ? items.get(i + 1) : Values.UNDEFINED);
      Map<String, Object> scope = new HashMap<>();
      scope.put(f.name(), items.get(i));
      scope.put("loop", loop);
      scopes.push(scope);
      try {
        execute(f.body());
      } finally {
        scopes.pop();
      }
    }
  }

  private Object lookup(String name) {
    for (Map<String, Object> scope : scopes) {
      if (scope.containsKey(name)) {
        return scope.get(name);
      }
    }
    return Values.UNDEFINED;
  }

  Object eval(Expr expr) {
    return switch (expr) {
      case Expr.Literal l -> l.value();
      case Expr.Name n -> lookup(n.name());
      case Expr.Attr a -> operators.item(eval(a.target()), a.name(), a.pos());
      case Expr.Index i -> operators.item(eval(i.target()), eval(i.index()), i.pos());
      case Expr.Slice s ->
          operators.slice(
              eval(s.target()),
              s.start() == null ? null : eval(s.start()),
              s.stop() == null ? null : eval(s.stop()),
              s.pos());
      case Expr.Unary u ->
          u.op().equals("not")
              ? !Values.truthy(eval(u.operand()))
              : operators.binary("-", 0L, eval(u.operand()), u.pos());
      case Expr.Binary b -> binary(b);
      case Expr.Test t -> t.negated() != operators.test(eval(t.operand()), t.test(), t.pos());
      case Expr.Filter f -> operators.filter(eval(f.operand()), f.name(), args(f.args()), f.pos());
      case Expr.Call c -> call(c);
      case Expr.Cond c ->
          Values.truthy(eval(c.cond()))
              ? eval(c.then())
              : c.otherwise() == null ? Values.UNDEFINED : eval(c.otherwise());
      case Expr.ListLit l -> args(l.items());
    };
  }

  private Object binary(Expr.Binary b) {
    if (b.op().equals("and")) {
      Object left = eval(b.left());
      return Values.truthy(left) ? eval(b.right()) : left;
    }
    if (b.op().equals("or")) {
      Object left = eval(b.left());
      return Values.truthy(left) ? left : eval(b.right());
    }
    return operators.binary(b.op(), eval(b.left()), eval(b.right()), b.pos());
  }

  private List<Object> args(List<Expr> exprs) {
    List<Object> values = new ArrayList<>();
    for (Expr e : exprs) {
      values.add(eval(e));
    }
    return values;
  }

  private Object call(Expr.Call c) {
    List<Object> args = args(c.args());
    if (c.callee() instanceof Expr.Name n && n.name().equals("namespace") && args.isEmpty()) {
      Namespace ns = new Namespace();
      c.kwargs().forEach((k, v) -> ns.put(k, eval(v)));
      return ns;
    }
    if (!c.kwargs().isEmpty()) {
      throw source.error(c.pos(), "keyword arguments are supported only by namespace()");
    }
    if (c.callee() instanceof Expr.Name n && n.name().equals("raise_exception")) {
      String message = args.isEmpty() ? "" : Values.str(args.get(0));
      throw source.error(c.pos(), "raise_exception: " + message);
    }
    if (c.callee() instanceof Expr.Attr a) {
      return operators.method(eval(a.target()), a.name(), args, c.pos());
    }
    throw source.error(c.pos(), "unknown function");
  }
}
