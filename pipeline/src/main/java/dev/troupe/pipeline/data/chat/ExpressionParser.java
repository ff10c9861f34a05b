package dev.troupe.pipeline.data.chat;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** Parses the tokens of one tag into expressions, with Jinja's operator precedence. */
final class ExpressionParser {
  private static final Set<String> COMPARISONS = Set.of("==", "!=", "<", ">", "<=", ">=");

  private final List<Token> tokens;
  private final SourceText source;
  private int next;

  ExpressionParser(List<Token> tokens, SourceText source) {
    this.tokens = tokens;
    this.source = source;
  }

  Token peek() {
    return tokens.get(next);
  }

  Token advance() {
    Token t = tokens.get(next);
    if (t.kind() != Token.Kind.END) {
      next++;
    }
    return t;
  }

  boolean accept(String op) {
    if (peek().is(op)) {
      advance();
      return true;
    }
    return false;
  }

  void expect(String op) {
    if (!accept(op)) {
      throw unexpected("'" + op + "'");
    }
  }

  String name() {
    Token t = advance();
    if (t.kind() != Token.Kind.NAME) {
      next--;
      throw unexpected("a name");
    }
    return t.text();
  }

  void expectEnd() {
    if (peek().kind() != Token.Kind.END) {
      throw unexpected("the end of the tag");
    }
  }

  TemplateException unexpected(String wanted) {
    Token t = peek();
    String got = t.kind() == Token.Kind.END ? "the end of the tag" : "'" + t.text() + "'";
    return source.error(t.pos(), "expected " + wanted + " but found " + got);
  }

  Expr expression() {
    Expr value = or();
    if (accept("if")) {
      Expr cond = or();
      Expr otherwise = accept("else") ? expression() : null;
      return new Expr.Cond(cond, value, otherwise);
    }
    return value;
  }

  private Expr or() {
    Expr left = and();
    while (peek().is("or")) {
      int pos = advance().pos();
      left = new Expr.Binary("or", left, and(), pos);
    }
    return left;
  }

  private Expr and() {
    Expr left = not();
    while (peek().is("and")) {
      int pos = advance().pos();
      left = new Expr.Binary("and", left, not(), pos);
    }
    return left;
  }

  private Expr not() {
    if (peek().is("not")) {
      int pos = advance().pos();
      return new Expr.Unary("not", not(), pos);
    }
    return compare();
  }

  private Expr compare() {
    Expr left = math1();
    while (true) {
      Token t = peek();
      if (t.kind() == Token.Kind.OP && COMPARISONS.contains(t.text())) {
        advance();
        left = new Expr.Binary(t.text(), left, math1(), t.pos());
      } else if (t.is("in")) {
        advance();
        left = new Expr.Binary("in", left, math1(), t.pos());
      } else if (t.is("not") && tokens.get(next + 1).is("in")) {
        advance();
        advance();
        left = new Expr.Binary("not in", left, math1(), t.pos());
      } else {
        return left;
      }
    }
  }

  private Expr math1() {
    Expr left = concat();
    while (peek().kind() == Token.Kind.OP && (peek().is("+") || peek().is("-"))) {
      Token t = advance();
      left = new Expr.Binary(t.text(), left, concat(), t.pos());
    }
    return left;
  }

  private Expr concat() {
    Expr left = math2();
    while (peek().is("~")) {
      int pos = advance().pos();
      left = new Expr.Binary("~", left, math2(), pos);
    }
    return left;
  }

  private Expr math2() {
    Expr left = unary();
    while (peek().is("*") || peek().is("/") || peek().is("//") || peek().is("%")) {
      Token t = advance();
      left = new Expr.Binary(t.text(), left, unary(), t.pos());
    }
    return left;
  }

  private Expr unary() {
    if (peek().is("-")) {
      int pos = advance().pos();
      return new Expr.Unary("-", unary(), pos);
    }
    Expr value = postfix(primary());
    while (true) {
      if (peek().is("|")) {
        int pos = advance().pos();
        String filter = name();
        List<Expr> args = List.of();
        if (peek().is("(")) {
          Map<String, Expr> kwargs = new LinkedHashMap<>();
          args = arguments(kwargs);
          if (!kwargs.isEmpty()) {
            throw source.error(
                pos, "keyword arguments to the filter '" + filter + "' are not supported");
          }
        }
        value = postfix(new Expr.Filter(value, filter, args, pos));
      } else if (peek().is("is")) {
        int pos = advance().pos();
        boolean negated = accept("not");
        Token t = advance();
        if (t.kind() != Token.Kind.NAME) {
          next--;
          throw unexpected("a test name");
        }
        value = new Expr.Test(value, t.text(), negated, pos);
      } else {
        return value;
      }
    }
  }

  private Expr primary() {
    Token t = advance();
    switch (t.kind()) {
      case STRING, INT -> {
        return new Expr.Literal(t.value());
      }
      case NAME -> {
        return switch (t.text()) {
          case "true", "True" -> new Expr.Literal(Boolean.TRUE);
          case "false", "False" -> new Expr.Literal(Boolean.FALSE);
          case "none", "None" -> new Expr.Literal(null);
          default -> new Expr.Name(t.text(), t.pos());
        };
      }
      default -> {
        if (t.is("(")) {
          Expr inner = expression();
          expect(")");
          return inner;
        }
        if (t.is("[")) {
          List<Expr> items = new ArrayList<>();
          while (!accept("]")) {
            items.add(expression());
            if (!peek().is("]")) {
              expect(",");
            }
          }
          return new Expr.ListLit(items);
        }
        next--;
        throw unexpected("an expression");
      }
    }
  }

  private Expr postfix(Expr value) {
    while (true) {
      Token t = peek();
      if (t.is(".")) {
        advance();
        value = new Expr.Attr(value, name(), t.pos());
      } else if (t.is("[")) {
        advance();
        Expr start = peek().is(":") ? null : expression();
        if (accept(":")) {
          Expr stop = peek().is("]") ? null : expression();
          value = new Expr.Slice(value, start, stop, t.pos());
        } else {
          value = new Expr.Index(value, start, t.pos());
        }
        expect("]");
      } else if (t.is("(")) {
        Map<String, Expr> kwargs = new LinkedHashMap<>();
        List<Expr> args = arguments(kwargs);
        value = new Expr.Call(value, args, kwargs, t.pos());
      } else {
        return value;
      }
    }
  }

  /** Positional arguments; keyword arguments go to {@code kwargs}. */
  private List<Expr> arguments(Map<String, Expr> kwargs) {
    expect("(");
    List<Expr> args = new ArrayList<>();
    while (!accept(")")) {
      if (peek().kind() == Token.Kind.NAME && tokens.get(next + 1).is("=")) {
        String key = advance().text();
        advance();
        kwargs.put(key, expression());
      } else if (!kwargs.isEmpty()) {
        throw unexpected("a keyword argument after keyword arguments");
      } else {
        args.add(expression());
      }
      if (!peek().is(")")) {
        expect(",");
      }
    }
    return args;
  }
}
