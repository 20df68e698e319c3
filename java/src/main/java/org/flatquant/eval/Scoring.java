package org.flatquant.eval;

import java.util.List;

/** lm-evaluation-harness's per-item metrics and their aggregation. */
public final class Scoring {
    private Scoring() {
    }

    /**
     * Scores one item from the log-likelihoods of its requests.
     *
     * @param item the item
     * @param logprobs one summed log-likelihood per request
     * @param greedy one is-greedy flag per request
     * @return the item's scores
     */
    public static ItemResult score(TaskItem item, double[] logprobs, boolean[] greedy) {
        int k = item.requests().size();
        if (logprobs.length != k || greedy.length != k) {
            throw new IllegalArgumentException(k + " requests but " + logprobs.length + " results");
        }
        if (!item.task().isMultipleChoice()) {
            return new ItemResult(item.index(), 0, logprobs.clone(), greedy.clone(), 0, 0, greedy[0] ? 1 : 0,
                    Double.NaN);
        }
        double[] norm = new double[k];
        for (int i = 0; i < k; i++) {
            // lm-eval divides by len(choice): code points, without the target delimiter.
            norm[i] = logprobs[i] / (double) PyText.len(item.choices().get(i));
        }
        int pred = argmax(logprobs);
        int predNorm = argmax(norm);
        double acc = pred == item.gold() ? 1 : 0;
        double accNorm = item.task().hasAccNorm() ? (predNorm == item.gold() ? 1 : 0) : Double.NaN;
        return new ItemResult(item.index(), item.gold(), logprobs.clone(), greedy.clone(), pred, predNorm, acc,
                accNorm);
    }

    /**
     * numpy's {@code argmax}: the first index of the largest value; a NaN wins as soon as it is seen.
     *
     * @param v at least one value
     * @return the index
     */
    static int argmax(double[] v) {
        int best = 0;
        for (int i = 0; i < v.length; i++) {
            if (Double.isNaN(v[i])) {
                return i;
            }
            if (v[i] > v[best]) {
                best = i;
            }
        }
        return best;
    }

    /**
     * Aggregates item scores.
     *
     * @param task the task
     * @param items the scored items
     * @param requests distinct requests evaluated
     * @param tokens tokens fed
     * @param seconds wall time
     * @return the task's result
     */
    public static TaskResult aggregate(Task task, List<ItemResult> items, long requests, long tokens,
                                       double seconds) {
        int n = items.size();
        double[] acc = new double[n];
        double[] accNorm = new double[n];
        double[] ll = new double[n];
        for (int i = 0; i < n; i++) {
            acc[i] = items.get(i).acc();
            accNorm[i] = items.get(i).accNorm();
            ll[i] = items.get(i).logprobs()[0];
        }
        boolean norm = task.hasAccNorm();
        double ppl = task == Task.LAMBADA_OPENAI && n > 0 ? Math.exp(-mean(ll)) : Double.NaN;
        return new TaskResult(task, n, mean(acc), meanStderr(acc), norm ? mean(accNorm) : Double.NaN,
                norm ? meanStderr(accNorm) : Double.NaN, ppl, requests, tokens, seconds, items);
    }

    /** The arithmetic mean; NaN for no values. */
    static double mean(double[] v) {
        if (v.length == 0) {
            return Double.NaN;
        }
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return s / v.length;
    }

    /** lm-eval's {@code mean_stderr}: sample standard deviation (n - 1) over sqrt(n); NaN below 2 values. */
    static double meanStderr(double[] v) {
        int n = v.length;
        if (n < 2) {
            return Double.NaN;
        }
        double mu = mean(v);
        double ss = 0;
        for (double x : v) {
            ss += (x - mu) * (x - mu);
        }
        return Math.sqrt(ss / (n - 1)) / Math.sqrt(n);
    }
}
