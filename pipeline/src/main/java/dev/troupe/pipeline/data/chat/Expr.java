package dev.troupe.pipeline.data.chat;

import java.util.List;
import java.util.Map;

/** A parsed template expression; {@code pos} is the offset in the template for error messages. */
sealed interface Expr {

  /** A constant: string, long, boolean, {@code null} (none). */
  record Literal(Object value) implements Expr {}

  /** A variable. */
  record Name(String name, int pos) implements Expr {}

  /** {@code target.name}. */
  record Attr(Expr target, String name, int pos) implements Expr {}

  /** {@code target[index]}. */
  record Index(Expr target, Expr index, int pos) implements Expr {}

  /** {@code target[start:stop]}; either bound may be {@code null}. */
  record Slice(Expr target, Expr start, Expr stop, int pos) implements Expr {}

  /** {@code not x} or {@code -x}. */
  record Unary(String op, Expr operand, int pos) implements Expr {}

  /** A binary operator; {@code "not in"} is one operator. */
  record Binary(String op, Expr left, Expr right, int pos) implements Expr {}

  /** {@code operand is [not] test}. */
  record Test(Expr operand, String test, boolean negated, int pos) implements Expr {}

  /** {@code operand | name(args)}. */
  record Filter(Expr operand, String name, List<Expr> args, int pos) implements Expr {}

  /** A function or method call; {@code kwargs} in source order. */
  record Call(Expr callee, List<Expr> args, Map<String, Expr> kwargs, int pos) implements Expr {}

  /** {@code then if cond else otherwise}; {@code otherwise} may be {@code null}. */
  record Cond(Expr cond, Expr then, Expr otherwise) implements Expr {}

  /** {@code [a, b, ...]}. */
  record ListLit(List<Expr> items) implements Expr {}
}
