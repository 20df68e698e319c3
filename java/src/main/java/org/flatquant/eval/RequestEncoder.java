package org.flatquant.eval;

import java.util.Arrays;
import java.util.Objects;
import java.util.function.Function;

/**
 * Turns a (context, continuation) request into token ids exactly as lm-evaluation-harness's HFLM does
 * ({@code _encode_pair}): trailing whitespace of the context moves to the front of the continuation, then the
 * whole string {@code context + continuation} and the context alone are tokenized, and the continuation's tokens
 * are the whole encoding minus as many leading tokens as the context encoding has. So a token that straddles the
 * boundary belongs to the continuation, and the context tokens fed to the model are those of the context alone.
 *
 * <p>BOS follows the tokenizer function: lm-eval 0.4 (with {@code add_bos_token} unset) encodes with the
 * tokenizer's own default, which for a GGUF model is {@code tokenizer.ggml.add_bos_token}; both encodings then
 * start with the BOS and it stays in the context.
 */
public final class RequestEncoder {
    private final Function<String, int[]> tokenize;

    /**
     * @param tokenize text to token ids, including the BOS policy (e.g. {@code s -> tokenizer.encode(s, bos)})
     */
    public RequestEncoder(Function<String, int[]> tokenize) {
        this.tokenize = Objects.requireNonNull(tokenize, "tokenize");
    }

    /**
     * Token ids of one request.
     *
     * @param context the token ids fed before the scored ones (not empty)
     * @param continuation the scored token ids (not empty)
     */
    public record Encoded(int[] context, int[] continuation) {
        /** The number of tokens of context and continuation together. */
        public int length() {
            return context.length + continuation.length;
        }
    }

    /**
     * Encodes one request.
     *
     * @param context the context text, not empty
     * @param continuation the continuation text
     * @return the token ids
     * @throws IllegalArgumentException when the context or the continuation ends up with no token
     */
    public Encoded encode(String context, String continuation) {
        String ctx = PyText.rstrip(context);
        String cont = context.substring(ctx.length()) + continuation;
        int[] whole = tokenize.apply(ctx + cont);
        int[] ctxIds = tokenize.apply(ctx);
        if (ctxIds.length == 0) {
            throw new IllegalArgumentException("the context has no tokens: '" + context + "'");
        }
        if (whole.length <= ctxIds.length) {
            throw new IllegalArgumentException("the continuation has no tokens after the context: '" + continuation
                    + "'");
        }
        return new Encoded(ctxIds, Arrays.copyOfRange(whole, ctxIds.length, whole.length));
    }

    /**
     * Cuts a request to at most {@code maxTokens} tokens by dropping the oldest context tokens, as lm-eval
     * left-truncates its input. (lm-eval keeps {@code max_length + 1} tokens, the last one only predicted; the
     * native scorer takes at most the model's context length in all.)
     *
     * @param e the request
     * @param maxTokens the most tokens context and continuation may hold together
     * @return {@code e} itself when it fits
     * @throws IllegalArgumentException when the continuation alone leaves no room for a context token
     */
    public static Encoded truncate(Encoded e, int maxTokens) {
        if (e.length() <= maxTokens) {
            return e;
        }
        if (e.continuation().length >= maxTokens) {
            throw new IllegalArgumentException("a continuation of " + e.continuation().length
                    + " tokens does not fit the model's context of " + maxTokens + " tokens");
        }
        int keep = maxTokens - e.continuation().length;
        int[] ctx = e.context();
        return new Encoded(Arrays.copyOfRange(ctx, ctx.length - keep, ctx.length), e.continuation());
    }
}
