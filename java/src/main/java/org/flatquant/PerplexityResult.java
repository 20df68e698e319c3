package org.flatquant;

/**
 * The outcome of {@link Model#perplexity}.
 *
 * @param perplexity {@code exp(nllSum / predicted)}
 * @param nllSum the summed negative log-likelihood of the predicted tokens, natural log
 * @param predicted tokens whose negative log-likelihood was summed ({@code seqlen - 1} per window)
 * @param tokens tokens in the whole tokenized text, BOS included
 * @param chunks windows evaluated
 * @param bos whether a BOS token was put before the text
 * @param seconds wall time of tokenization and evaluation, in seconds
 * @since 0.1
 */
public record PerplexityResult(double perplexity, double nllSum, long predicted, long tokens, long chunks,
                               boolean bos, double seconds) {

    /**
     * The mean negative log-likelihood per predicted token.
     *
     * @return {@code nllSum / predicted}, in nats
     */
    public double meanNll() {
        return predicted == 0 ? Double.NaN : nllSum / predicted;
    }
}
