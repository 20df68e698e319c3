package org.flatquant.serve;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import org.flatquant.GenerationOptions;
import org.flatquant.InvalidArgumentException;

/**
 * Reads and validates the bodies of {@code /v1/completions} and {@code /v1/chat/completions}, so that a request
 * is refused with a precise 4xx before it takes a place in a queue.
 *
 * <p>Supported: {@code model}, {@code prompt} (a string, a one-element array of strings, or token ids),
 * {@code messages} (roles system/developer/user/assistant; text content as a string or text parts),
 * {@code max_tokens} / {@code max_completion_tokens}, {@code temperature}, {@code top_p}, {@code top_k} (an
 * extension; -1 or 0 is off), {@code seed}, {@code stop}, {@code stream}, {@code stream_options.include_usage},
 * {@code n = 1}. Options that would change the answer in a way this server does not implement (several choices,
 * logprobs, penalties, logit bias, echo, suffix, tools) are refused rather than ignored. Unknown fields are
 * ignored, as clients add their own.
 */
final class Requests {
    private Requests() {
    }

    /** The endpoint a request came to. */
    enum Kind {
        COMPLETION, CHAT
    }

    /**
     * A validated request.
     *
     * @param promptTokens the prompt as token ids
     * @param options sampling and the token limit
     * @param stop stop sequences: the request's, plus the chat format's for chat requests
     * @param stopTokens token ids that end the answer (the chat format's)
     */
    record Request(Kind kind, int[] promptTokens, GenerationOptions options, List<String> stop, int[] stopTokens,
                   boolean stream, boolean includeUsage) {
    }

    /** The default {@code max_tokens} of {@code /v1/completions}, as in the OpenAI API. */
    static final int COMPLETION_DEFAULT_MAX_TOKENS = 16;

    static Request parse(Kind kind, Object json, Backend backend, ServerConfig config) {
        if (!(json instanceof Map<?, ?> raw)) {
            throw ApiException.invalid(null, "the request body must be a JSON object");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> body = (Map<String, Object>) raw;

        Object model = get(body, "model");
        if (model != null && !(model instanceof String)) {
            throw ApiException.invalid("model", "'model' must be a string");
        }
        if (model != null && !model.equals(backend.modelId())) {
            throw new ApiException(404, "invalid_request_error", "model", "model_not_found", "the model '" + model
                    + "' does not exist; this server has '" + backend.modelId() + "'");
        }
        refuseUnsupported(kind, body);

        List<String> stop = new ArrayList<>(stops(body));
        int[] stopTokens = new int[0];
        int[] prompt;
        String promptParam;
        if (kind == Kind.CHAT) {
            ChatFormat chat = backend.chatFormat();
            prompt = backend.encode(chat.render(messages(body)));
            stop.addAll(chat.stopStrings());
            stopTokens = chat.stopTokens();
            promptParam = "messages";
        } else {
            prompt = prompt(body, backend);
            promptParam = "prompt";
        }

        int ctx = backend.contextLength();
        if (prompt.length == 0) {
            throw ApiException.invalid(promptParam, "the prompt has no tokens");
        }
        int promptLimit = config.maxPromptTokens() == 0 ? ctx - 1 : Math.min(config.maxPromptTokens(), ctx - 1);
        if (prompt.length > promptLimit) {
            throw ApiException.invalid(promptParam, "context_length_exceeded", "the prompt has " + prompt.length
                    + " tokens; this server accepts at most " + promptLimit);
        }
        Integer requested = integer(body, kind == Kind.CHAT && body.containsKey("max_completion_tokens")
                ? "max_completion_tokens" : "max_tokens", 1, Integer.MAX_VALUE);
        int maxTokens;
        if (requested != null) {
            if (requested > config.maxTokens()) {
                throw ApiException.invalid("max_tokens", "max_tokens " + requested + " exceeds this server's limit of "
                        + config.maxTokens());
            }
            if (prompt.length + requested > ctx) {
                throw ApiException.invalid("max_tokens", "context_length_exceeded", "the context holds " + ctx
                        + " tokens; the prompt has " + prompt.length + " and max_tokens asks for " + requested);
            }
            maxTokens = requested;
        } else if (kind == Kind.CHAT) {
            maxTokens = Math.min(config.maxTokens(), ctx - prompt.length);
        } else {
            maxTokens = Math.min(Math.min(COMPLETION_DEFAULT_MAX_TOKENS, config.maxTokens()), ctx - prompt.length);
        }

        double temperature = number(body, "temperature", 0, 2, 1.0);
        double topP = number(body, "top_p", Double.MIN_VALUE, 1, 1.0);
        Integer topK = integer(body, "top_k", -1, Integer.MAX_VALUE);
        Long seed = int64(body, "seed");
        GenerationOptions options;
        try {
            options = GenerationOptions.sampled(maxTokens, (float) temperature, (float) topP,
                    topK == null || topK < 0 ? 0 : topK, seed != null ? seed : ThreadLocalRandom.current().nextLong());
        } catch (InvalidArgumentException e) {
            throw ApiException.invalid(null, e.detail()); // e.g. a top_p so small it rounds to 0 as a float
        }

        boolean stream = bool(body, "stream", false);
        boolean includeUsage = false;
        Object so = get(body, "stream_options");
        if (so != null) {
            if (!(so instanceof Map<?, ?> m)) {
                throw ApiException.invalid("stream_options", "'stream_options' must be an object");
            }
            Object iu = m.get("include_usage");
            if (iu != null && iu != Json.NULL && !(iu instanceof Boolean)) {
                throw ApiException.invalid("stream_options.include_usage", "'include_usage' must be a boolean");
            }
            includeUsage = Boolean.TRUE.equals(iu);
        }
        return new Request(kind, prompt, options, List.copyOf(stop), stopTokens, stream, includeUsage);
    }

    private static void refuseUnsupported(Kind kind, Map<String, Object> body) {
        Integer n = integer(body, "n", 1, Integer.MAX_VALUE);
        if (n != null && n != 1) {
            throw ApiException.invalid("n", "only n = 1 is supported");
        }
        Integer bestOf = integer(body, "best_of", 1, Integer.MAX_VALUE);
        if (bestOf != null && bestOf != 1) {
            throw ApiException.invalid("best_of", "only best_of = 1 is supported");
        }
        if (bool(body, "echo", false)) {
            throw ApiException.invalid("echo", "echo is not supported");
        }
        Object logprobs = get(body, "logprobs");
        if (logprobs != null && !Boolean.FALSE.equals(logprobs)
                && !(logprobs instanceof BigDecimal d && d.signum() == 0)) {
            throw ApiException.invalid("logprobs", "logprobs are not supported");
        }
        Object topLogprobs = get(body, "top_logprobs");
        if (topLogprobs != null && !(topLogprobs instanceof BigDecimal d && d.signum() == 0)) {
            throw ApiException.invalid("top_logprobs", "logprobs are not supported");
        }
        for (String p : List.of("presence_penalty", "frequency_penalty")) {
            if (number(body, p, -2, 2, 0) != 0) {
                throw ApiException.invalid(p, p + " is not supported; leave it at 0");
            }
        }
        Object bias = get(body, "logit_bias");
        if (bias != null && !(bias instanceof Map<?, ?> m && m.isEmpty())) {
            throw ApiException.invalid("logit_bias", "logit_bias is not supported");
        }
        Object suffix = get(body, "suffix");
        if (suffix != null && !"".equals(suffix)) {
            throw ApiException.invalid("suffix", "suffix is not supported");
        }
        for (String p : List.of("tools", "functions")) {
            Object t = get(body, p);
            if (t != null && !(t instanceof List<?> l && l.isEmpty())) {
                throw ApiException.invalid(p, "tool calling is not supported");
            }
        }
        Object format = get(body, "response_format");
        if (format != null && !(format instanceof Map<?, ?> m && "text".equals(m.get("type")))) {
            throw ApiException.invalid("response_format", "only the text response format is supported");
        }
        if (kind == Kind.COMPLETION && body.containsKey("messages")) {
            throw ApiException.invalid("messages", "'messages' belongs to /v1/chat/completions; "
                    + "/v1/completions takes 'prompt'");
        }
        if (kind == Kind.CHAT && body.containsKey("prompt")) {
            throw ApiException.invalid("prompt", "'prompt' belongs to /v1/completions; "
                    + "/v1/chat/completions takes 'messages'");
        }
    }

    private static int[] prompt(Map<String, Object> body, Backend backend) {
        Object p = get(body, "prompt");
        if (p == null) {
            throw ApiException.invalid("prompt", "'prompt' is required");
        }
        if (p instanceof String s) {
            return backend.encode(s);
        }
        if (p instanceof List<?> list) {
            if (list.size() == 1 && list.get(0) instanceof String s) {
                return backend.encode(s);
            }
            if (list.size() == 1 && list.get(0) instanceof List<?> inner) {
                list = inner;
            }
            if (!list.isEmpty() && list.stream().allMatch(x -> x instanceof BigDecimal)) {
                int[] ids = new int[list.size()];
                for (int i = 0; i < ids.length; i++) {
                    BigDecimal d = (BigDecimal) list.get(i);
                    int id = exactInt(d, "prompt");
                    if (id < 0 || id >= backend.vocabSize()) {
                        throw ApiException.invalid("prompt", "token id " + id + " is outside the vocabulary [0, "
                                + backend.vocabSize() + ")");
                    }
                    ids[i] = id;
                }
                return ids;
            }
            if (list.size() > 1 && list.stream().allMatch(x -> x instanceof String || x instanceof List<?>)) {
                throw ApiException.invalid("prompt", "only one prompt per request is supported");
            }
        }
        throw ApiException.invalid("prompt", "'prompt' must be a string, an array of one string, or an array of "
                + "token ids");
    }

    private static List<ChatFormat.Message> messages(Map<String, Object> body) {
        Object m = get(body, "messages");
        if (!(m instanceof List<?> list) || list.isEmpty()) {
            throw ApiException.invalid("messages", "'messages' must be a non-empty array");
        }
        List<ChatFormat.Message> out = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            String where = "messages[" + i + "]";
            if (!(list.get(i) instanceof Map<?, ?> msg)) {
                throw ApiException.invalid(where, where + " must be an object");
            }
            Object role = msg.get("role");
            if (!(role instanceof String r)) {
                throw ApiException.invalid(where + ".role", where + ".role must be a string");
            }
            String normalized = switch (r) {
                case "system", "developer" -> "system";
                case "user", "assistant" -> r;
                default -> throw ApiException.invalid(where + ".role", "role '" + r + "' is not supported; use "
                        + "system, developer, user or assistant");
            };
            out.add(new ChatFormat.Message(normalized, content(msg.get("content"), where + ".content",
                    normalized.equals("assistant"))));
        }
        return out;
    }

    private static String content(Object c, String where, boolean mayBeNull) {
        if (c instanceof String s) {
            return s;
        }
        if ((c == null || c == Json.NULL) && mayBeNull) {
            return "";
        }
        if (c instanceof List<?> parts) {
            StringBuilder sb = new StringBuilder();
            for (Object p : parts) {
                if (!(p instanceof Map<?, ?> part) || !"text".equals(part.get("type"))
                        || !(part.get("text") instanceof String text)) {
                    throw ApiException.invalid(where, "only text content parts ({\"type\": \"text\", \"text\": "
                            + "...}) are supported");
                }
                sb.append(text);
            }
            return sb.toString();
        }
        throw ApiException.invalid(where, where + " must be a string or an array of text parts");
    }

    private static List<String> stops(Map<String, Object> body) {
        Object s = get(body, "stop");
        if (s == null) {
            return List.of();
        }
        List<?> list = s instanceof String str ? List.of(str) : s instanceof List<?> l ? l : null;
        if (list == null || list.size() > 4) {
            throw ApiException.invalid("stop", "'stop' must be a string or an array of at most 4 strings");
        }
        List<String> out = new ArrayList<>();
        for (Object o : list) {
            if (!(o instanceof String str) || str.isEmpty() || str.length() > 256) {
                throw ApiException.invalid("stop", "each stop sequence must be a string of 1 to 256 characters");
            }
            out.add(str);
        }
        return out;
    }

    // ---- typed access -------------------------------------------------------------------------------------------

    /** The value of a key; null when absent or JSON null. */
    private static Object get(Map<String, Object> body, String key) {
        Object v = body.get(key);
        return v == Json.NULL ? null : v;
    }

    private static boolean bool(Map<String, Object> body, String key, boolean fallback) {
        Object v = get(body, key);
        if (v == null) {
            return fallback;
        }
        if (!(v instanceof Boolean b)) {
            throw ApiException.invalid(key, "'" + key + "' must be a boolean");
        }
        return b;
    }

    private static double number(Map<String, Object> body, String key, double min, double max, double fallback) {
        Object v = get(body, key);
        if (v == null) {
            return fallback;
        }
        if (!(v instanceof BigDecimal d)) {
            throw ApiException.invalid(key, "'" + key + "' must be a number");
        }
        double x = d.doubleValue();
        if (!(x >= min && x <= max)) {
            throw ApiException.invalid(key, "'" + key + "' must be between " + (min == Double.MIN_VALUE ? "0 (excluded)"
                    : fmt(min)) + " and " + fmt(max) + ", got " + d);
        }
        return x;
    }

    private static String fmt(double x) {
        return x == Math.rint(x) ? Long.toString((long) x) : Double.toString(x);
    }

    private static Integer integer(Map<String, Object> body, String key, int min, int max) {
        Object v = get(body, key);
        if (v == null) {
            return null;
        }
        if (!(v instanceof BigDecimal d)) {
            throw ApiException.invalid(key, "'" + key + "' must be an integer");
        }
        int x = exactInt(d, key);
        if (x < min || x > max) {
            throw ApiException.invalid(key, "'" + key + "' must be at least " + min
                    + (max == Integer.MAX_VALUE ? "" : " and at most " + max) + ", got " + x);
        }
        return x;
    }

    private static int exactInt(BigDecimal d, String key) {
        try {
            return d.intValueExact();
        } catch (ArithmeticException e) {
            try {
                return d.stripTrailingZeros().intValueExact();
            } catch (ArithmeticException e2) {
                throw ApiException.invalid(key, "'" + key + "' must be an integer in the 32-bit range, got " + d);
            }
        }
    }

    private static Long int64(Map<String, Object> body, String key) {
        Object v = get(body, key);
        if (v == null) {
            return null;
        }
        try {
            return ((BigDecimal) v).stripTrailingZeros().longValueExact();
        } catch (ClassCastException | ArithmeticException e) {
            throw ApiException.invalid(key, "'" + key + "' must be a 64-bit integer");
        }
    }
}
