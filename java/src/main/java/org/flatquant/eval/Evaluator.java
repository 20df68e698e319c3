package org.flatquant.eval;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.flatquant.Bos;
import org.flatquant.CancelledException;
import org.flatquant.Model;
import org.flatquant.ProgressListener;

/**
 * Scores task items on a model the way lm-evaluation-harness does: every request of a task is tokenized up front
 * ({@link RequestEncoder}), identical token sequences are scored once, the distinct requests run longest first
 * (lm-eval's order, so a request too long for the model fails at once and the progress estimate errs on the slow
 * side), in groups of {@link Model#loglikelihoods} calls; each request is still scored from an empty context, so
 * results do not depend on the grouping (exactly on the CPU, up to floating-point summation order on a GPU).
 *
 * <p>Not thread safe; use one per thread (the model itself may be shared).
 */
public final class Evaluator {
    /** Requests per native call: enough for a GPU to score many at once, few enough for timely progress. */
    private static final int BATCH = 256;

    private final Model model;
    private final RequestEncoder encoder;

    /**
     * @param model the model
     * @param bos the BOS policy of every encoding: {@link Bos#DEFAULT} is lm-eval's default (the tokenizer's own
     *     choice), {@link Bos#YES} is lm-eval's {@code add_bos_token=True}
     */
    public Evaluator(Model model, Bos bos) {
        this.model = Objects.requireNonNull(model, "model");
        Objects.requireNonNull(bos, "bos");
        this.encoder = new RequestEncoder(s -> model.tokenizer().encode(s, bos));
    }

    /**
     * The token ids of every request of the items, truncated to the model's context as lm-eval truncates.
     *
     * @param items the items
     * @return per item, per request
     */
    public List<List<RequestEncoder.Encoded>> encode(List<TaskItem> items) {
        int max = model.info().contextLength();
        List<List<RequestEncoder.Encoded>> out = new ArrayList<>(items.size());
        for (TaskItem item : items) {
            List<RequestEncoder.Encoded> reqs = new ArrayList<>(item.requests().size());
            for (TaskItem.Request r : item.requests()) {
                reqs.add(RequestEncoder.truncate(encoder.encode(r.context(), r.continuation()), max));
            }
            out.add(reqs);
        }
        return out;
    }

    /**
     * Scores the items of one task.
     *
     * @param task the task the items belong to
     * @param items the items (see {@link TaskData#load})
     * @param listener progress on the calling thread, stage {@code task.id()}, in requests; may return false to
     *     cancel; may be null
     * @return the per-item and aggregate scores
     * @throws CancelledException when the listener cancelled
     */
    public TaskResult evaluate(Task task, List<TaskItem> items, ProgressListener listener) {
        long t0 = System.nanoTime();
        for (TaskItem item : items) {
            if (item.task() != task) {
                throw new IllegalArgumentException("item " + item.index() + " belongs to " + item.task().id()
                        + ", not " + task.id());
            }
        }
        List<List<RequestEncoder.Encoded>> encoded = encode(items);

        Map<Key, Integer> slot = new HashMap<>();
        List<RequestEncoder.Encoded> distinct = new ArrayList<>();
        for (List<RequestEncoder.Encoded> reqs : encoded) {
            for (RequestEncoder.Encoded e : reqs) {
                slot.computeIfAbsent(new Key(e), k -> {
                    distinct.add(e);
                    return distinct.size() - 1;
                });
            }
        }
        Integer[] order = new Integer[distinct.size()];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparingInt((Integer i) -> -distinct.get(i).length()).thenComparing(i -> i));

        double[] logprob = new double[distinct.size()];
        boolean[] greedy = new boolean[distinct.size()];
        long tokens = 0;
        report(listener, task, 0, order.length);
        for (int done = 0; done < order.length; ) {
            int end = Math.min(order.length, done + BATCH);
            List<int[]> contexts = new ArrayList<>(end - done);
            List<int[]> continuations = new ArrayList<>(end - done);
            for (int k = done; k < end; k++) {
                RequestEncoder.Encoded e = distinct.get(order[k]);
                contexts.add(e.context());
                continuations.add(e.continuation());
                tokens += e.length();
            }
            Model.LogLikelihood[] r = model.loglikelihoods(contexts, continuations);
            for (int k = done; k < end; k++) {
                logprob[order[k]] = r[k - done].logprob();
                greedy[order[k]] = r[k - done].greedy();
            }
            done = end;
            report(listener, task, done, order.length);
        }

        List<ItemResult> results = new ArrayList<>(items.size());
        for (int i = 0; i < items.size(); i++) {
            List<RequestEncoder.Encoded> reqs = encoded.get(i);
            double[] lp = new double[reqs.size()];
            boolean[] g = new boolean[reqs.size()];
            for (int j = 0; j < reqs.size(); j++) {
                int s = slot.get(new Key(reqs.get(j)));
                lp[j] = logprob[s];
                g[j] = greedy[s];
            }
            results.add(Scoring.score(items.get(i), lp, g));
        }
        return Scoring.aggregate(task, results, distinct.size(), tokens, (System.nanoTime() - t0) / 1e9);
    }

    private static void report(ProgressListener listener, Task task, long done, long total) {
        if (listener != null && !listener.onProgress(task.id(), done, total)) {
            throw new CancelledException(task.id() + " evaluation cancelled after " + done + " of " + total
                    + " requests");
        }
    }

    /** Token-sequence identity of a request. */
    private record Key(int[] context, int[] continuation) {
        Key(RequestEncoder.Encoded e) {
            this(e.context(), e.continuation());
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Key k && Arrays.equals(context, k.context)
                    && Arrays.equals(continuation, k.continuation);
        }

        @Override
        public int hashCode() {
            return 31 * Arrays.hashCode(context) + Arrays.hashCode(continuation);
        }
    }
}
