package org.flatquant.eval;

import java.util.List;

/**
 * The scores of one task over the evaluated items, aggregated as lm-evaluation-harness aggregates them.
 *
 * @param task the task
 * @param n the number of items
 * @param acc the mean accuracy
 * @param accStderr its standard error, lm-eval's {@code mean_stderr}: the sample standard deviation (n - 1) over
 *     {@code sqrt(n)}; NaN for a single item
 * @param accNorm the mean length-normalized accuracy; NaN where the task has none
 * @param accNormStderr its standard error; NaN where undefined
 * @param perplexity LAMBADA's {@code exp(-mean log-likelihood)} of the target word; NaN for other tasks
 * @param requests the number of distinct log-likelihood requests evaluated
 * @param tokens the tokens fed to the model over those requests
 * @param seconds wall time of tokenization and scoring
 * @param items the per-item scores, in file order
 */
public record TaskResult(Task task, int n, double acc, double accStderr, double accNorm, double accNormStderr,
                         double perplexity, long requests, long tokens, double seconds, List<ItemResult> items) {
    /** Copies the item list. */
    public TaskResult {
        items = List.copyOf(items);
    }
}
