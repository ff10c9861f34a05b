package dev.troupe.pipeline.data.chat;

import java.util.List;

/** A parsed template statement. */
sealed interface Stmt {

  /** Literal text. */
  record Text(String text) implements Stmt {}

  /** {@code {{ expr }}}. */
  record Output(Expr expr) implements Stmt {}

  /** {@code if}/{@code elif} branches, and the {@code else} body (maybe empty). */
  record If(List<Expr> conditions, List<List<Stmt>> bodies, List<Stmt> orElse) implements Stmt {}

  /** {@code for name in iterable}. */
  record For(String name, Expr iterable, List<Stmt> body, int pos) implements Stmt {}

  /** {@code set name = value}, or {@code set name.attribute = value} on a namespace. */
  record Set(String name, String attribute, Expr value, int pos) implements Stmt {}
}
