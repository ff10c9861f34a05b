package dev.troupe.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.troupe.pipeline.data.chat.ChatTemplate;
import dev.troupe.pipeline.data.chat.TemplateException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Troupe's chat templates render exactly as Hugging Face's (jinja2, as transformers configures it):
 * real model templates (ChatML/Qwen2, Llama 2, Llama 3, Zephyr, Gemma, Mistral) and templates that
 * exercise whitespace control, namespaces, loops, tests and filters, on conversations with
 * whitespace, quotes and non-ASCII text, with and without the generation prompt; errors where
 * jinja2 has errors. The expected texts are committed; where Debian's python3-jinja2 is installed
 * they are also rendered live by {@code chat_template_reference.py} and must equal the committed
 * ones.
 */
class ChatTemplateReferenceTest {
  private static final Path DIR = Path.of("src/test/resources/chat-templates").toAbsolutePath();
  private static final ObjectMapper JSON = new ObjectMapper();

  @Test
  void rendersLikeJinja2() throws IOException {
    JsonNode cases = JSON.readTree(DIR.resolve("cases.json").toFile());
    JsonNode expected = JSON.readTree(DIR.resolve("expected.json").toFile());
    int k = 0;
    int compared = 0;
    for (JsonNode c : cases) {
      Map<String, String> tokens = new HashMap<>();
      c.get("special_tokens")
          .fields()
          .forEachRemaining(e -> tokens.put(e.getKey(), e.getValue().asText()));
      ChatTemplate template = null;
      try {
        template = ChatTemplate.parse(c.get("template").asText(), c.get("name").asText(), tokens);
      } catch (TemplateException e) {
        // compared below: every render of this case must be an error
      }
      int conversation = 0;
      for (JsonNode conv : c.get("conversations")) {
        List<ChatTemplate.Message> messages = new ArrayList<>();
        for (JsonNode m : conv) {
          messages.add(new ChatTemplate.Message(m.get("role").asText(), m.get("content").asText()));
        }
        for (boolean generationPrompt : new boolean[] {false, true}) {
          JsonNode want = expected.get(k++);
          String where =
              c.get("name").asText()
                  + ", conversation "
                  + conversation
                  + ", add_generation_prompt="
                  + generationPrompt;
          String got;
          try {
            got = template == null ? null : template.render(messages, generationPrompt);
          } catch (TemplateException e) {
            got = null;
          }
          if (want.has("error")) {
            assertEquals(null, got, where + ": jinja2 fails here");
          } else {
            assertEquals(want.get("text").asText(), got, where);
          }
          compared++;
        }
        conversation++;
      }
    }
    assertEquals(expected.size(), k, "cases.json and expected.json disagree in size");
    assertTrue(compared >= 60, "only " + compared + " renders compared");
  }

  @Test
  void committedExpectationsAreJinja2s() throws Exception {
    Path python = PythonReference.PYTHON;
    Process probe = new ProcessBuilder(python.toString(), "-c", "import jinja2").start();
    org.junit.jupiter.api.Assumptions.assumeTrue(
        probe.waitFor(60, TimeUnit.SECONDS) && probe.exitValue() == 0,
        python + " cannot import jinja2 (Debian's python3-jinja2)");
    Process p =
        new ProcessBuilder(
                python.toString(),
                Path.of("src/test/python/chat_template_reference.py").toAbsolutePath().toString(),
                DIR.resolve("cases.json").toString())
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS) && p.exitValue() == 0, "reference script failed");
    assertEquals(JSON.readTree(DIR.resolve("expected.json").toFile()), JSON.readTree(out));
  }
}
