package dev.troupe.pipeline.data.chat;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/** Parses a template's segments into a statement tree. */
final class TemplateParser {
  private static final Set<String> IGNORED_TAGS = Set.of("generation", "endgeneration");

  private final SourceText source;
  private final List<Segment> segments;
  private int next;

  private TemplateParser(SourceText source) {
    this.source = source;
    this.segments = Segment.scan(source);
  }

  /** The statements of {@code source}. */
  static List<Stmt> parse(SourceText source) {
    TemplateParser parser = new TemplateParser(source);
    List<Stmt> body = parser.body(Set.of());
    if (parser.next < parser.segments.size()) {
      Segment s = parser.segments.get(parser.next);
      throw source.error(s.start(), "unexpected '" + keyword(s) + "' without a matching opener");
    }
    return body;
  }

  /** Statements up to (not including) a tag whose keyword is in {@code ends}, or the end. */
  private List<Stmt> body(Set<String> ends) {
    List<Stmt> out = new ArrayList<>();
    while (next < segments.size()) {
      Segment s = segments.get(next);
      switch (s.kind()) {
        case TEXT -> {
          out.add(new Stmt.Text(s.content()));
          next++;
        }
        case OUTPUT -> {
          ExpressionParser p = parser(s);
          out.add(new Stmt.Output(p.expression()));
          p.expectEnd();
          next++;
        }
        case STATEMENT -> {
          String keyword = keyword(s);
          if (ends.contains(keyword)) {
            return out;
          }
          if (keyword.startsWith("end") || keyword.equals("elif") || keyword.equals("else")) {
            if (!IGNORED_TAGS.contains(keyword)) {
              throw source.error(s.start(), "unexpected '" + keyword + "'");
            }
          }
          next++;
          Stmt stmt = statement(s, keyword);
          if (stmt != null) {
            out.add(stmt);
          }
        }
      }
    }
    return out;
  }

  private Stmt statement(Segment s, String keyword) {
    ExpressionParser p = parser(s);
    p.advance();
    switch (keyword) {
      case "if" -> {
        List<Expr> conditions = new ArrayList<>();
        List<List<Stmt>> bodies = new ArrayList<>();
        conditions.add(p.expression());
        p.expectEnd();
        Set<String> ends = Set.of("elif", "else", "endif");
        while (true) {
          bodies.add(body(ends));
          Segment end = closing(s, "endif");
          ExpressionParser q = parser(end);
          String k = q.advance().text();
          if (k.equals("elif")) {
            conditions.add(q.expression());
            q.expectEnd();
          } else if (k.equals("else")) {
            q.expectEnd();
            List<Stmt> orElse = body(Set.of("endif"));
            parser(closing(s, "endif")).advance();
            return new Stmt.If(conditions, bodies, orElse);
          } else {
            return new Stmt.If(conditions, bodies, List.of());
          }
        }
      }
      case "for" -> {
        String name = p.name();
        p.expect("in");
        Expr iterable = p.expression();
        p.expectEnd();
        List<Stmt> loopBody = body(Set.of("endfor"));
        closing(s, "endfor");
        return new Stmt.For(name, iterable, loopBody, s.start());
      }
      case "set" -> {
        String name = p.name();
        String attribute = p.accept(".") ? p.name() : null;
        p.expect("=");
        Expr value = p.expression();
        p.expectEnd();
        return new Stmt.Set(name, attribute, value, s.start());
      }
      default -> {
        if (IGNORED_TAGS.contains(keyword)) {
          return null;
        }
        throw source.error(s.start(), "unknown tag '" + keyword + "'");
      }
    }
  }

  /** The tag that ended a body (consumed), or an error naming the opener and {@code wanted}. */
  private Segment closing(Segment opener, String wanted) {
    if (next >= segments.size()) {
      throw source.error(
          opener.start(), "'" + keyword(opener) + "' has no matching '" + wanted + "'");
    }
    return segments.get(next++);
  }

  private ExpressionParser parser(Segment s) {
    return new ExpressionParser(Token.lex(s.content(), s.start(), source), source);
  }

  private static String keyword(Segment s) {
    String text = s.content().strip();
    int end = 0;
    while (end < text.length() && Character.isJavaIdentifierPart(text.charAt(end))) {
      end++;
    }
    return text.substring(0, end);
  }
}
