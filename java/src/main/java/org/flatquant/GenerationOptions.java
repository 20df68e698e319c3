package org.flatquant;

/**
 * How {@link Session#generate} picks tokens and when it stops. Immutable; start from {@link #greedy(int)} or
 * {@link #sampled(int, float, float, int, long)} and adjust with the {@code with*} methods.
 *
 * @param maxTokens the most tokens to generate, at least 1
 * @param temperature 0 for greedy decoding, otherwise the softmax temperature
 * @param topP the nucleus mass in (0, 1]; 1 turns it off
 * @param topK keep the k most likely tokens; 0 turns it off
 * @param seed the seed of the sampler's random stream
 * @param stopAtEos whether the end-of-sequence token ends generation (it is then not part of the result)
 * @param cancellation a token that stops generation from another thread, or null
 * @since 0.1
 */
public record GenerationOptions(int maxTokens, float temperature, float topP, int topK, long seed,
                                boolean stopAtEos, CancellationToken cancellation) {

    /**
     * Validates the options.
     *
     * @throws InvalidArgumentException for a parameter out of range
     */
    public GenerationOptions {
        if (maxTokens < 1) {
            throw new InvalidArgumentException("maxTokens must be at least 1, got " + maxTokens);
        }
        checkSampling(temperature, topP, topK);
    }

    static void checkSampling(float temperature, float topP, int topK) {
        if (!(temperature >= 0) || Float.isInfinite(temperature)) {
            throw new InvalidArgumentException("temperature must be 0 (greedy) or positive, got " + temperature);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new InvalidArgumentException("topP must be in (0, 1], got " + topP);
        }
        if (topK < 0) {
            throw new InvalidArgumentException("topK must be 0 (off) or positive, got " + topK);
        }
    }

    /**
     * Greedy decoding that stops at EOS.
     *
     * @param maxTokens the most tokens to generate
     * @return the options
     */
    public static GenerationOptions greedy(int maxTokens) {
        return new GenerationOptions(maxTokens, 0f, 1f, 0, 0L, true, null);
    }

    /**
     * Sampling that stops at EOS.
     *
     * @param maxTokens the most tokens to generate
     * @param temperature the softmax temperature, &gt; 0
     * @param topP the nucleus mass in (0, 1]; 1 turns it off
     * @param topK keep the k most likely tokens; 0 turns it off
     * @param seed the seed of the random stream
     * @return the options
     */
    public static GenerationOptions sampled(int maxTokens, float temperature, float topP, int topK, long seed) {
        return new GenerationOptions(maxTokens, temperature, topP, topK, seed, true, null);
    }

    /**
     * A copy with another token limit.
     *
     * @param tokens the most tokens to generate
     * @return the new options
     */
    public GenerationOptions withMaxTokens(int tokens) {
        return new GenerationOptions(tokens, temperature, topP, topK, seed, stopAtEos, cancellation);
    }

    /**
     * A copy with another seed.
     *
     * @param value the seed
     * @return the new options
     */
    public GenerationOptions withSeed(long value) {
        return new GenerationOptions(maxTokens, temperature, topP, topK, value, stopAtEos, cancellation);
    }

    /**
     * A copy that does or does not stop at EOS.
     *
     * @param value whether EOS stops generation
     * @return the new options
     */
    public GenerationOptions withStopAtEos(boolean value) {
        return new GenerationOptions(maxTokens, temperature, topP, topK, seed, value, cancellation);
    }

    /**
     * A copy with a cancellation token.
     *
     * @param token the token, or null for none
     * @return the new options
     */
    public GenerationOptions withCancellation(CancellationToken token) {
        return new GenerationOptions(maxTokens, temperature, topP, topK, seed, stopAtEos, token);
    }
}
