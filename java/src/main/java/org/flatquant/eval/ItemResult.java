package org.flatquant.eval;

/**
 * The scores of one task item.
 *
 * @param index the item's position in the task file (lm-eval's {@code doc_id})
 * @param gold the index of the correct choice (0 for LAMBADA)
 * @param logprobs the summed log-likelihood of each request, in the item's request order
 * @param greedy per request, whether every continuation token was the model's argmax
 * @param pred the choice with the highest log-likelihood (the first one on ties, like numpy's argmax)
 * @param predNorm the choice with the highest log-likelihood per character of the choice
 * @param acc 1 when correct, else 0: {@code pred == gold}, or for LAMBADA the target was greedy
 * @param accNorm 1 when {@code predNorm == gold}, else 0; NaN for tasks without {@code acc_norm}
 */
public record ItemResult(int index, int gold, double[] logprobs, boolean[] greedy, int pred, int predNorm,
                         double acc, double accNorm) {
}
