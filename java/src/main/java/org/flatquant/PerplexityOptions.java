package org.flatquant;

/**
 * How {@link Model#perplexity} evaluates a text. Immutable; start from {@link #defaults()} and change fields
 * with the {@code with*} methods.
 *
 * @param seqlen window length in tokens, at least 2 and at most the model's context length
 * @param bos whether one BOS token goes before the whole text
 * @param maxChunks windows to evaluate, at least 1; -1 evaluates every full window
 * @param cancellation a token that cancels the evaluation from another thread, or null
 * @since 0.1
 */
public record PerplexityOptions(int seqlen, Bos bos, long maxChunks, CancellationToken cancellation) {

    /** The default window length, as in the GPTQ/QuaRot/FlatQuant evaluations. */
    public static final int DEFAULT_SEQLEN = 2048;

    /**
     * Validates the options.
     *
     * @throws InvalidArgumentException for a window shorter than 2 tokens or a chunk limit of 0 or below -1
     */
    public PerplexityOptions {
        if (seqlen < 2) {
            throw new InvalidArgumentException("seqlen must be at least 2 (one token predicts the next), got "
                    + seqlen);
        }
        if (bos == null) {
            throw new InvalidArgumentException("bos must not be null");
        }
        if (maxChunks == 0 || maxChunks < -1) {
            throw new InvalidArgumentException("maxChunks must be at least 1, or -1 for every window, got "
                    + maxChunks);
        }
    }

    /**
     * Windows of 2048 tokens, the model's BOS default, every window, no cancellation token.
     *
     * @return the defaults
     */
    public static PerplexityOptions defaults() {
        return new PerplexityOptions(DEFAULT_SEQLEN, Bos.DEFAULT, -1, null);
    }

    /**
     * A copy with another window length.
     *
     * @param tokens the window length in tokens
     * @return the new options
     */
    public PerplexityOptions withSeqlen(int tokens) {
        return new PerplexityOptions(tokens, bos, maxChunks, cancellation);
    }

    /**
     * A copy with another BOS choice.
     *
     * @param value the BOS choice
     * @return the new options
     */
    public PerplexityOptions withBos(Bos value) {
        return new PerplexityOptions(seqlen, value, maxChunks, cancellation);
    }

    /**
     * A copy with another chunk limit.
     *
     * @param chunks windows to evaluate, or -1 for all
     * @return the new options
     */
    public PerplexityOptions withMaxChunks(long chunks) {
        return new PerplexityOptions(seqlen, bos, chunks, cancellation);
    }

    /**
     * A copy with a cancellation token.
     *
     * @param token the token, or null for none
     * @return the new options
     */
    public PerplexityOptions withCancellation(CancellationToken token) {
        return new PerplexityOptions(seqlen, bos, maxChunks, token);
    }
}
