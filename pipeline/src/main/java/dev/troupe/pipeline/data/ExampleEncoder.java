package dev.troupe.pipeline.data;

import com.fasterxml.jackson.databind.JsonNode;
import dev.troupe.pipeline.data.chat.ChatTemplate;
import dev.troupe.pipeline.data.chat.TemplateException;
import dev.troupe.pipeline.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/** Turns one parsed JSONL record into ids and labels, as {@link JsonlDataset} documents. */
final class ExampleEncoder {
  private static final Set<String> ROLES = Set.of("system", "user", "assistant");
  private static final int SHOWN_CHARS = 40;

  private final Format format;
  private final TextEncoding encoding;
  private final TextTokenizer tokenizer;

  ExampleEncoder(Format format, TextEncoding encoding) {
    this.format = Objects.requireNonNull(format, "format");
    this.encoding = Objects.requireNonNull(encoding, "encoding");
    this.tokenizer = encoding.tokenizer();
    if (tokenizer == null && format != Format.TOKENS) {
      throw new IllegalArgumentException("the " + format + " format needs a tokenizer");
    }
  }

  /** The Stanford Alpaca prompt, up to and including {@code "### Response:\n"}. */
  static String alpacaPrompt(String instruction, String input) {
    if (input == null || input.isEmpty()) {
      return "Below is an instruction that describes a task. Write a response that appropriately"
          + " completes the request.\n\n### Instruction:\n"
          + instruction
          + "\n\n### Response:\n";
    }
    return "Below is an instruction that describes a task, paired with an input that provides"
        + " further context. Write a response that appropriately completes the request.\n\n"
        + "### Instruction:\n"
        + instruction
        + "\n\n### Input:\n"
        + input
        + "\n\n### Response:\n";
  }

  /** The chat header of a message with role {@code role}. */
  static String chatHeader(String role) {
    return "<|" + role + "|>\n";
  }

  TokenSequence encode(JsonNode record) throws LineProblem {
    if (!record.isObject()) {
      throw new LineProblem("not a JSON object: " + shown(record));
    }
    return switch (format) {
      case ALPACA -> alpaca(record);
      case CHAT -> chat(record);
      case TOKENS -> tokens(record);
    };
  }

  private TokenSequence alpaca(JsonNode record) throws LineProblem {
    String instruction = text(record, "instruction", "", true);
    String input = text(record, "input", "", false);
    String output = text(record, "output", "", true);
    TokenSequence seq = new TokenSequence();
    seq.add(encoding.bosId(), false);
    seq.addAll(encode(alpacaPrompt(instruction, input), "prompt"), false);
    seq.endPrompt(output);
    seq.addAll(encode(output, "field \"output\""), true);
    seq.add(encoding.eosId(), true);
    return seq;
  }

  private TokenSequence chat(JsonNode record) throws LineProblem {
    JsonNode messages = record.get("messages");
    if (messages == null || messages.isNull()) {
      throw new LineProblem("missing array field \"messages\"");
    }
    if (!messages.isArray()) {
      throw new LineProblem("field \"messages\" must be an array, got " + shown(messages));
    }
    String[] roles = new String[messages.size()];
    String[] contents = new String[messages.size()];
    int lastAssistant = -1;
    for (int i = 0; i < roles.length; i++) {
      JsonNode message = messages.get(i);
      String where = "messages[" + i + "]";
      if (!message.isObject()) {
        throw new LineProblem(where + " is not an object: " + shown(message));
      }
      roles[i] = text(message, "role", where + ": ", true);
      contents[i] = text(message, "content", where + ": ", true);
      if (!ROLES.contains(roles[i])) {
        throw new LineProblem(
            where
                + ": unknown role \""
                + shortened(roles[i])
                + "\" (expected system, user or assistant)");
      }
      if (roles[i].equals("assistant")) {
        lastAssistant = i;
      }
    }
    if (lastAssistant < 0) {
      throw new LineProblem("no assistant message in \"messages\"");
    }
    if (encoding.chatTemplate() != null) {
      return templated(roles, contents, lastAssistant);
    }
    TokenSequence seq = new TokenSequence();
    seq.add(encoding.bosId(), false);
    StringBuilder context = new StringBuilder();
    for (int i = 0; i < roles.length; i++) {
      context.append(chatHeader(roles[i]));
      if (!roles[i].equals("assistant")) {
        context.append(contents[i]).append('\n');
        continue;
      }
      seq.addAll(encode(context.toString(), "messages before messages[" + i + "]"), false);
      context.setLength(0);
      if (i == lastAssistant) {
        seq.endPrompt(contents[i]);
      }
      seq.addAll(encode(contents[i], "messages[" + i + "]: content"), true);
      seq.add(encoding.eosId(), true);
    }
    if (!context.isEmpty()) {
      seq.addAll(encode(context.toString(), "messages after the last assistant message"), false);
    }
    return seq;
  }

  /**
   * A conversation through the model's chat template. Rendering grows the text one message at a
   * time: the text of messages {@code [0, i)} with the generation prompt is the context of
   * assistant message {@code i} (not in the loss), and what rendering message {@code i} adds to it
   * is the assistant's turn (in the loss, with whatever end-of-turn text the template writes). The
   * pieces are tokenized separately, so a token never spans the boundary between prompt and
   * response.
   */
  private TokenSequence templated(String[] roles, String[] contents, int lastAssistant)
      throws LineProblem {
    ChatTemplate template = encoding.chatTemplate();
    List<ChatTemplate.Message> messages = new ArrayList<>();
    for (int i = 0; i < roles.length; i++) {
      messages.add(new ChatTemplate.Message(roles[i], contents[i]));
    }
    TokenSequence seq = new TokenSequence();
    String done = "";
    for (int i = 0; i <= lastAssistant; i++) {
      if (!roles[i].equals("assistant")) {
        continue;
      }
      String context = render(template, messages.subList(0, i), true);
      String turn = render(template, messages.subList(0, i + 1), false);
      if (!context.startsWith(done) || !turn.startsWith(context)) {
        throw new LineProblem(
            template.origin()
                + " does not render messages[0.."
                + i
                + "] as an extension of the shorter conversation, so the assistant's tokens"
                + " cannot be told apart; use Troupe's default chat format (data.chat-template ="
                + " default)");
      }
      seq.addAll(
          encode(context.substring(done.length()), "text before messages[" + i + "]"), false);
      if (i == lastAssistant) {
        seq.endPrompt(contents[i]);
      }
      seq.addAll(encode(turn.substring(context.length()), "messages[" + i + "]"), true);
      done = turn;
    }
    String all = render(template, messages, false);
    if (!all.startsWith(done)) {
      throw new LineProblem(
          template.origin() + " renders the whole conversation differently from its beginning");
    }
    seq.addAll(
        encode(all.substring(done.length()), "messages after the last assistant message"), false);
    return seq;
  }

  private static String render(
      ChatTemplate template, List<ChatTemplate.Message> messages, boolean generationPrompt)
      throws LineProblem {
    try {
      return template.render(messages, generationPrompt);
    } catch (TemplateException e) {
      throw new LineProblem(e.getMessage());
    }
  }

  private TokenSequence tokens(JsonNode record) throws LineProblem {
    long[] ids = idArray(record, "input_ids", false);
    if (ids.length == 0) {
      throw new LineProblem("field \"input_ids\" is empty");
    }
    JsonNode labelsNode = record.get("labels");
    long[] labels =
        labelsNode == null || labelsNode.isNull() ? ids : idArray(record, "labels", true);
    if (labels.length != ids.length) {
      throw new LineProblem(
          "field \"labels\" has length "
              + labels.length
              + " but \"input_ids\" has length "
              + ids.length);
    }
    TokenSequence seq = new TokenSequence();
    for (int t = 0; t < ids.length; t++) {
      seq.addLabeled(ids[t], labels[t]);
    }
    seq.endPromptAtFirstLabel();
    return seq;
  }

  private long[] idArray(JsonNode record, String field, boolean labels) throws LineProblem {
    JsonNode array = record.get(field);
    if (array == null || array.isNull()) {
      throw new LineProblem("missing array field \"" + field + "\"");
    }
    if (!array.isArray()) {
      throw new LineProblem(
          "field \"" + field + "\" must be an array of integers, got " + shown(array));
    }
    long[] ids = new long[array.size()];
    for (int t = 0; t < ids.length; t++) {
      JsonNode value = array.get(t);
      String where = field + "[" + t + "]";
      if (!value.isIntegralNumber() || !value.canConvertToLong()) {
        throw new LineProblem(where + " is not an integer token id: " + shown(value));
      }
      ids[t] = value.longValue();
      if (labels && ids[t] == Example.IGNORE) {
        continue;
      }
      if (ids[t] < 0) {
        throw new LineProblem(
            where + " = " + ids[t] + " is not a token id" + (labels ? " or -100" : ""));
      }
      if (tokenizer != null && ids[t] >= tokenizer.vocabSize()) {
        throw new LineProblem(
            where
                + " = "
                + ids[t]
                + " is not below the tokenizer's vocabulary size "
                + tokenizer.vocabSize());
      }
    }
    return ids;
  }

  private long[] encode(String text, String what) throws LineProblem {
    try {
      return tokenizer.encode(text);
    } catch (IllegalArgumentException e) {
      throw new LineProblem(what + ": " + e.getMessage());
    }
  }

  private static String text(JsonNode object, String field, String where, boolean required)
      throws LineProblem {
    JsonNode value = object.get(field);
    if (value == null || value.isNull()) {
      if (required) {
        throw new LineProblem(where + "missing string field \"" + field + "\"");
      }
      return null;
    }
    if (!value.isTextual()) {
      throw new LineProblem(
          where + "field \"" + field + "\" must be a string, got " + shown(value));
    }
    return value.textValue();
  }

  private static String shown(JsonNode value) {
    return shortened(value.toString());
  }

  private static String shortened(String text) {
    return text.length() <= SHOWN_CHARS ? text : text.substring(0, SHOWN_CHARS) + "...";
  }
}
