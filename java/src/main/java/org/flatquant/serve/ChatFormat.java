package org.flatquant.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.ToIntFunction;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Turns chat messages into one prompt text, and says where the assistant's turn ends.
 *
 * <p>GGUF files carry a Jinja chat template ({@code tokenizer.chat_template}); running Jinja is out of scope, so
 * the template is only classified:
 * <ul>
 *   <li><b>ChatML</b> when it uses {@code <|im_start|>} and {@code <|im_end|>} and both are single tokens of the
 *       vocabulary (SmolLM2, Qwen2 and many others): {@code <|im_start|>role\ncontent<|im_end|>\n} per message,
 *       then {@code <|im_start|>assistant\n}. A default system message written in the template for conversations
 *       that start without one (SmolLM2 has "You are a helpful AI assistant named SmolLM, ...") is recognised
 *       and used the same way. Generation stops at {@code <|im_end|>} or {@code <|im_start|>}.</li>
 *   <li><b>plain</b> otherwise (no template, or one of another family): {@code role: content} lines, then
 *       {@code assistant:}; generation stops where the model starts a new {@code user:} or {@code system:}
 *       line. Any model can continue this, but only models trained on it answer well.</li>
 * </ul>
 * Immutable and thread safe.
 */
final class ChatFormat {
    /** The two formats. */
    enum Kind {
        CHATML, PLAIN
    }

    /** One chat message; the role is one of system, user, assistant. */
    record Message(String role, String content) {
    }

    static final String IM_START = "<|im_start|>";
    static final String IM_END = "<|im_end|>";

    /**
     * A ChatML template's default system turn: {@code {% if loop.first and messages[0]['role'] != 'system' %}
     * {{ '<|im_start|>system\n...<|im_end|>\n' }}}. The newline may be written as an escape or literally.
     */
    private static final Pattern DEFAULT_SYSTEM = Pattern.compile(
            "messages\\[0\\]\\[['\"]role['\"]\\]\\s*!=\\s*['\"]system['\"]\\s*%}\\s*\\{\\{\\s*'<\\|im_start\\|>system"
                    + "(?:\\\\n|\\n)((?:[^'\\\\]|\\\\.)*?)<\\|im_end\\|>(?:\\\\n|\\n)'\\s*}}",
            Pattern.DOTALL);

    private final Kind kind;
    private final String defaultSystem;
    private final int[] stopTokens;
    private final List<String> stopStrings;

    private ChatFormat(Kind kind, String defaultSystem, int[] stopTokens, List<String> stopStrings) {
        this.kind = kind;
        this.defaultSystem = defaultSystem;
        this.stopTokens = stopTokens;
        this.stopStrings = List.copyOf(stopStrings);
    }

    /**
     * Classifies a model's chat template.
     *
     * @param template the GGUF {@code tokenizer.chat_template}, or null when the model has none
     * @param singleToken the id of a text that the tokenizer turns into exactly one token, else -1
     * @return the format to use
     */
    static ChatFormat detect(String template, ToIntFunction<String> singleToken) {
        if (template != null && template.contains(IM_START) && template.contains(IM_END)) {
            ChatFormat f = chatml(template, singleToken);
            if (f != null) {
                return f;
            }
        }
        return plain();
    }

    /**
     * ChatML for this vocabulary, or null when {@code <|im_start|>} or {@code <|im_end|>} is not a single token
     * (then the model was not trained on ChatML, whatever its template says).
     *
     * @param template the template, for its default system message; may be null
     */
    static ChatFormat chatml(String template, ToIntFunction<String> singleToken) {
        int start = singleToken.applyAsInt(IM_START);
        int end = singleToken.applyAsInt(IM_END);
        if (start < 0 || end < 0) {
            return null;
        }
        String system = null;
        if (template != null) {
            Matcher m = DEFAULT_SYSTEM.matcher(template);
            if (m.find()) {
                system = unescapeJinja(m.group(1));
            }
        }
        // The markers are control tokens in ChatML vocabularies and detokenize to nothing; the stop strings
        // catch vocabularies where they are ordinary (user-defined) tokens with text.
        return new ChatFormat(Kind.CHATML, system, new int[] {end, start}, List.of(IM_END, IM_START));
    }

    /** The plain {@code role: content} format. */
    static ChatFormat plain() {
        return new ChatFormat(Kind.PLAIN, null, new int[0], List.of("\nuser:", "\nsystem:"));
    }

    private static String unescapeJinja(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && i + 1 < s.length()) {
                char e = s.charAt(++i);
                sb.append(switch (e) {
                    case 'n' -> '\n';
                    case 't' -> '\t';
                    case 'r' -> '\r';
                    default -> e;
                });
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    Kind kind() {
        return kind;
    }

    /** The system message the template adds when a conversation has none, or null. */
    String defaultSystem() {
        return defaultSystem;
    }

    /** Token ids that end the assistant's turn (not part of the answer). */
    int[] stopTokens() {
        return stopTokens.clone();
    }

    /** Texts that end the assistant's turn (not part of the answer). */
    List<String> stopStrings() {
        return stopStrings;
    }

    /**
     * The prompt text for a conversation, ending where the assistant's answer begins.
     *
     * @param messages at least one message
     * @return the text to tokenize (with the model's default BOS behaviour)
     */
    String render(List<Message> messages) {
        StringBuilder sb = new StringBuilder();
        List<Message> all = new ArrayList<>(messages);
        if (defaultSystem != null && (all.isEmpty() || !all.get(0).role().equals("system"))) {
            all.add(0, new Message("system", defaultSystem));
        }
        for (Message m : all) {
            if (kind == Kind.CHATML) {
                sb.append(IM_START).append(m.role()).append('\n').append(m.content()).append(IM_END).append('\n');
            } else {
                sb.append(m.role()).append(": ").append(m.content()).append('\n');
            }
        }
        sb.append(kind == Kind.CHATML ? IM_START + "assistant\n" : "assistant:");
        return sb.toString();
    }

    @Override
    public String toString() {
        return kind.name().toLowerCase(Locale.ROOT) + (defaultSystem == null ? "" : " (with a default system message)");
    }
}
