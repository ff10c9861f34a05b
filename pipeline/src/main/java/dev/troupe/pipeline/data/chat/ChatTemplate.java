package dev.troupe.pipeline.data.chat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;

/**
 * A Hugging Face chat template: the Jinja program in a model's {@code tokenizer_config.json} that
 * turns a conversation into text, rendered as {@code transformers} renders it ({@code trim_blocks},
 * {@code lstrip_blocks}, the variables {@code messages}, {@code add_generation_prompt} and the
 * special tokens, and {@code raise_exception}).
 *
 * <p>Troupe runs a subset of Jinja that covers the templates chat models ship: text, {@code {{ }}},
 * {@code if}/{@code elif}/{@code else}, {@code for} with {@code loop.*}, {@code set} (also on a
 * {@code namespace()}), comments and whitespace control, the usual operators, slices, the tests
 * {@code defined}, {@code none}, {@code string}, ... , the filters {@code trim}, {@code length},
 * {@code upper}, {@code lower}, {@code tojson}, {@code default}, and the string methods {@code
 * strip}, {@code startswith}, .... Anything else is a {@link TemplateException} that names the line
 * and column; nothing is silently rendered differently.
 */
public final class ChatTemplate {
  /** The file that holds a model's template. */
  public static final String CONFIG_FILE = "tokenizer_config.json";

  private static final String[] SPECIAL_TOKENS = {
    "bos_token", "eos_token", "unk_token", "pad_token"
  };

  private final SourceText source;
  private final List<Stmt> program;
  private final Map<String, Object> specialTokens;

  private ChatTemplate(SourceText source, Map<String, Object> specialTokens) {
    this.source = source;
    this.program = TemplateParser.parse(source);
    this.specialTokens = Map.copyOf(specialTokens);
  }

  /**
   * Parses {@code template}.
   *
   * @param origin where the template came from, for error messages
   * @param specialTokens values for {@code bos_token}, {@code eos_token} and the like
   * @throws TemplateException if the template uses syntax outside the supported subset
   */
  public static ChatTemplate parse(
      String template, String origin, Map<String, String> specialTokens) {
    Objects.requireNonNull(template, "template");
    return new ChatTemplate(new SourceText(template, origin), new HashMap<>(specialTokens));
  }

  /**
   * The chat template of the model in {@code modelDir}, from its {@code tokenizer_config.json}
   * ({@code chat_template} as a string, or the entry named {@code default} when it is a list of
   * named templates); empty when the model has none.
   *
   * @throws IOException if the file cannot be read or is not valid JSON
   * @throws TemplateException if the template cannot be parsed
   */
  public static Optional<ChatTemplate> fromModel(Path modelDir) throws IOException {
    Path file = modelDir.resolve(CONFIG_FILE);
    if (!Files.isRegularFile(file)) {
      return Optional.empty();
    }
    JsonNode config;
    try {
      config = new ObjectMapper().readTree(file.toFile());
    } catch (IOException e) {
      throw new IOException(file + ": not valid JSON: " + e.getMessage(), e);
    }
    JsonNode template = config.get("chat_template");
    if (template == null || template.isNull()) {
      return Optional.empty();
    }
    String text = null;
    if (template.isTextual()) {
      text = template.textValue();
    } else if (template.isArray()) {
      for (JsonNode named : template) {
        if ("default".equals(named.path("name").asText()) && named.path("template").isTextual()) {
          text = named.get("template").textValue();
        }
      }
      if (text == null) {
        throw new IOException(
            file + ": chat_template is a list without an entry named \"default\"");
      }
    } else {
      throw new IOException(
          file + ": chat_template must be a string, got " + template.getNodeType());
    }
    Map<String, Object> tokens = new HashMap<>();
    for (String name : SPECIAL_TOKENS) {
      JsonNode value = config.get(name);
      if (value != null && value.isTextual()) {
        tokens.put(name, value.textValue());
      } else if (value != null && value.path("content").isTextual()) {
        tokens.put(name, value.get("content").textValue());
      }
    }
    return Optional.of(new ChatTemplate(new SourceText(text, file + " chat_template"), tokens));
  }

  /** One message of a conversation. */
  public record Message(String role, String content) {
    /** Checks that neither part is null. */
    public Message {
      Objects.requireNonNull(role, "role");
      Objects.requireNonNull(content, "content");
    }
  }

  /**
   * The text of {@code messages}.
   *
   * @param addGenerationPrompt whether to end with the header of an assistant turn (the prompt for
   *     generation)
   * @throws TemplateException if rendering fails, including the template's own {@code
   *     raise_exception}
   */
  public String render(List<Message> messages, boolean addGenerationPrompt) {
    List<Object> list = new ArrayList<>();
    for (Message m : messages) {
      Map<String, Object> map = new LinkedHashMap<>();
      map.put("role", m.role());
      map.put("content", m.content());
      list.add(map);
    }
    Map<String, Object> variables = new HashMap<>(specialTokens);
    variables.put("messages", list);
    variables.put("add_generation_prompt", addGenerationPrompt);
    return new Interpreter(source, variables).run(program);
  }

  /** Where the template came from. */
  public String origin() {
    return source.origin();
  }
}
