package org.flatquant;

import java.util.Arrays;

/**
 * What {@link Session#generate} produced.
 *
 * @param tokens the generated ids, without the prompt and without a final EOS
 * @param text the generated text: the concatenation of what the listener received
 * @param stopReason why generation ended
 * @since 0.1
 */
public record GenerationResult(int[] tokens, String text, StopReason stopReason) {

    /** Why generation ended. */
    public enum StopReason {
        /** The model produced its end-of-sequence token. */
        EOS,
        /** {@link GenerationOptions#maxTokens()} tokens were generated. */
        MAX_TOKENS,
        /** The listener returned false. */
        LISTENER,
        /** The options' cancellation token was cancelled. */
        CANCELLED,
        /** The session's KV cache is full. */
        CONTEXT_FULL
    }

    /**
     * Copies the token array, so the record stays immutable.
     */
    public GenerationResult {
        tokens = tokens.clone();
    }

    /**
     * The generated token ids.
     *
     * @return a copy, in generation order
     */
    @Override
    public int[] tokens() {
        return tokens.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GenerationResult r && Arrays.equals(tokens, r.tokens) && text.equals(r.text)
                && stopReason == r.stopReason;
    }

    @Override
    public int hashCode() {
        return (Arrays.hashCode(tokens) * 31 + text.hashCode()) * 31 + stopReason.hashCode();
    }

    @Override
    public String toString() {
        return "GenerationResult[tokens=" + Arrays.toString(tokens) + ", text=" + text + ", stopReason="
                + stopReason + "]";
    }
}
