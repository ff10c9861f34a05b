package dev.troupe.pipeline.data.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Parsing errors, loading from a model folder and namespaces; the rendering itself is compared with
 * jinja2 in the tests module (ChatTemplateReferenceTest).
 */
class ChatTemplateTest {
  @TempDir Path dir;

  private static final List<ChatTemplate.Message> CONVERSATION =
      List.of(
          new ChatTemplate.Message("user", "Hi"), new ChatTemplate.Message("assistant", "Hello"));

  private static String render(String template) {
    return ChatTemplate.parse(template, "t", Map.of("eos_token", "</s>"))
        .render(CONVERSATION, false);
  }

  @Test
  void errorsNameTheOriginLineAndColumn() {
    TemplateException unclosed =
        assertThrows(
            TemplateException.class,
            () -> ChatTemplate.parse("ok\n  {% for m in messages %}{{ m }}", "my.json", Map.of()));
    assertEquals(
        "my.json, line 2, column 5: 'for' has no matching 'endfor'", unclosed.getMessage());
    TemplateException filter =
        assertThrows(TemplateException.class, () -> render("{{ messages | frobnicate }}"));
    assertTrue(filter.getMessage().startsWith("t, line 1, column "), filter.getMessage());
    assertTrue(filter.getMessage().contains("frobnicate"), filter.getMessage());
    TemplateException raised =
        assertThrows(TemplateException.class, () -> render("{{ raise_exception('no system') }}"));
    assertTrue(raised.getMessage().contains("no system"), raised.getMessage());
    TemplateException notNamespace =
        assertThrows(TemplateException.class, () -> render("{% set x = 1 %}{% set x.y = 2 %}"));
    assertTrue(notNamespace.getMessage().contains("not a namespace"), notNamespace.getMessage());
  }

  @Test
  void namespacesCarryStateOutOfLoopsWhilePlainSetDoesNot() {
    assertEquals(
        "2 0",
        render(
            "{% set ns = namespace(n=0) %}{% set plain = 0 %}{% for m in messages %}"
                + "{% set ns.n = ns.n + 1 %}{% set plain = plain + 1 %}{% endfor %}"
                + "{{ ns.n }} {{ plain }}"));
  }

  @Test
  void specialTokensAreVariables() {
    assertEquals("Hello</s>", render("{{ messages[1].content + eos_token }}"));
  }

  @Test
  void fromModelReadsStringObjectAndNamedTemplates() throws IOException {
    Files.writeString(
        dir.resolve("tokenizer_config.json"),
        "{\"chat_template\": \"{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}\","
            + " \"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}}");
    assertEquals(
        "<s>HiHello", ChatTemplate.fromModel(dir).orElseThrow().render(CONVERSATION, false));

    Files.writeString(
        dir.resolve("tokenizer_config.json"),
        "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"},"
            + " {\"name\": \"default\", \"template\": \"{{ messages | length }}\"}]}");
    assertEquals("2", ChatTemplate.fromModel(dir).orElseThrow().render(CONVERSATION, false));

    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"model_max_length\": 8}");
    assertTrue(ChatTemplate.fromModel(dir).isEmpty());

    Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": ");
    IOException broken = assertThrows(IOException.class, () -> ChatTemplate.fromModel(dir));
    assertTrue(broken.getMessage().contains("tokenizer_config.json"), broken.getMessage());
  }
}
