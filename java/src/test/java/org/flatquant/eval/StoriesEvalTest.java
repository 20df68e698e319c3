package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.flatquant.Bos;
import org.flatquant.CancelledException;
import org.flatquant.Engine;
import org.flatquant.InvalidArgumentException;
import org.flatquant.Model;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The scoring mechanics on the tiny real model stories260K: the native log-likelihood against a log-softmax of
 * the model's logits computed here in double precision, BOS handling, de-duplication, progress and cancellation.
 */
class StoriesEvalTest {
    private static final Path TASKS = TestSupport.dataDir().resolve("tasks");
    static Engine engine;
    static Model model;

    @BeforeAll
    static void load() {
        Path path = TestSupport.storiesModel();
        engine = Engine.cpu(2);
        model = Model.load(engine, path);
    }

    @AfterAll
    static void close() {
        if (model != null) {
            model.close();
        }
        if (engine != null) {
            engine.close();
        }
    }

    /** Sum of log p(continuation token | prefix) and the greedy flag from the full logits, in double. */
    private static Model.LogLikelihood reference(int[] context, int[] continuation) {
        int[] seq = new int[context.length + continuation.length];
        System.arraycopy(context, 0, seq, 0, context.length);
        System.arraycopy(continuation, 0, seq, context.length, continuation.length);
        int vocab = model.info().vocabSize();
        float[] logits = model.logits(seq);
        double sum = 0;
        boolean greedy = true;
        for (int pos = context.length - 1; pos < seq.length - 1; pos++) {
            int row = pos * vocab;
            double max = Double.NEGATIVE_INFINITY;
            int best = 0;
            for (int j = 0; j < vocab; j++) {
                if (logits[row + j] > max) {
                    max = logits[row + j];
                    best = j;
                }
            }
            double z = 0;
            for (int j = 0; j < vocab; j++) {
                z += Math.exp(logits[row + j] - max);
            }
            int target = seq[pos + 1];
            sum += logits[row + target] - max - Math.log(z);
            greedy &= best == target;
        }
        return new Model.LogLikelihood(sum, greedy);
    }

    @Test
    void loglikelihoodMatchesTheLogits() {
        int[] ids = model.tokenizer().encode("Once upon a time, there was a little girl named Lily. She liked"
                + " to play in the park with her dog.", Bos.DEFAULT);
        for (int split : new int[] {1, 5, ids.length / 2, ids.length - 1}) {
            int[] ctx = Arrays.copyOfRange(ids, 0, split);
            int[] cont = Arrays.copyOfRange(ids, split, ids.length);
            Model.LogLikelihood got = model.loglikelihood(ctx, cont);
            Model.LogLikelihood want = reference(ctx, cont);
            assertEquals(want.logprob(), got.logprob(), 1e-4 * Math.max(1, Math.abs(want.logprob())),
                    "split " + split);
            assertEquals(want.greedy(), got.greedy(), "split " + split);
            assertTrue(got.logprob() < 0);
        }
    }

    @Test
    void greedyContinuationIsGreedy() {
        // Extend a prompt with the model's own argmax tokens: that continuation must come back greedy.
        int[] ctx = model.tokenizer().encode("Once upon a time", Bos.DEFAULT);
        int vocab = model.info().vocabSize();
        List<Integer> seq = new ArrayList<>();
        for (int t : ctx) {
            seq.add(t);
        }
        for (int step = 0; step < 4; step++) {
            float[] logits = model.logits(seq.stream().mapToInt(Integer::intValue).toArray());
            int row = (seq.size() - 1) * vocab;
            int best = 0;
            for (int j = 1; j < vocab; j++) {
                if (logits[row + j] > logits[row + best]) {
                    best = j;
                }
            }
            seq.add(best);
        }
        int[] cont = seq.subList(ctx.length, seq.size()).stream().mapToInt(Integer::intValue).toArray();
        assertTrue(model.loglikelihood(ctx, cont).greedy());
        int[] other = cont.clone();
        other[2] = (other[2] + 1) % vocab;
        assertTrue(!model.loglikelihood(ctx, other).greedy());
    }

    @Test
    void invalidRequests() {
        assertThrows(InvalidArgumentException.class, () -> model.loglikelihood(new int[0], new int[] {5}));
        assertThrows(InvalidArgumentException.class, () -> model.loglikelihood(new int[] {5}, new int[0]));
        assertThrows(InvalidArgumentException.class, () -> model.loglikelihood(new int[] {5}, new int[] {100000}));
        int n = model.info().contextLength();
        assertThrows(InvalidArgumentException.class, () -> model.loglikelihood(new int[n], new int[] {1}));
    }

    @Test
    void evaluatorScoresEveryTask() {
        Evaluator ev = new Evaluator(model, Bos.DEFAULT);
        for (Task t : Task.values()) {
            List<TaskItem> items = TaskData.load(t, TASKS, 3);
            TaskResult r = ev.evaluate(t, items, null);
            assertEquals(3, r.n());
            assertEquals(t, r.task());
            List<List<RequestEncoder.Encoded>> enc = ev.encode(items);
            for (int i = 0; i < 3; i++) {
                ItemResult it = r.items().get(i);
                assertEquals(i, it.index());
                for (int j = 0; j < it.logprobs().length; j++) {
                    RequestEncoder.Encoded e = enc.get(i).get(j);
                    // BOS by default: stories260K's tokenizer adds one, so every context starts with it.
                    assertEquals(model.info().bosId(), e.context()[0]);
                    Model.LogLikelihood direct = model.loglikelihood(e.context(), e.continuation());
                    assertEquals(direct.logprob(), it.logprobs()[j], 0.0);
                    assertEquals(direct.greedy(), it.greedy()[j]);
                }
            }
            assertTrue(r.acc() >= 0 && r.acc() <= 1);
            assertEquals(t.hasAccNorm(), !Double.isNaN(r.accNorm()), t.id());
            assertEquals(t == Task.LAMBADA_OPENAI, !Double.isNaN(r.perplexity()), t.id());
            assertTrue(r.tokens() > 0 && r.seconds() > 0);
        }
    }

    @Test
    void bosPolicy() {
        TaskItem item = TaskData.load(Task.ARC_EASY, TASKS, 1).get(0);
        RequestEncoder.Encoded yes = new Evaluator(model, Bos.YES).encode(List.of(item)).get(0).get(0);
        RequestEncoder.Encoded no = new Evaluator(model, Bos.NO).encode(List.of(item)).get(0).get(0);
        assertEquals(model.info().bosId(), yes.context()[0]);
        assertNotEquals(model.info().bosId(), no.context()[0]);
        assertArrayEquals(Arrays.copyOfRange(yes.context(), 1, yes.context().length), no.context());
        assertArrayEquals(yes.continuation(), no.continuation());
    }

    @Test
    void identicalRequestsRunOnce() {
        TaskItem item = TaskData.load(Task.PIQA, TASKS, 1).get(0);
        TaskItem copy = new TaskItem(Task.PIQA, 1, item.requests(), item.gold(), item.choices());
        List<long[]> seen = new ArrayList<>();
        TaskResult r = new Evaluator(model, Bos.DEFAULT).evaluate(Task.PIQA, List.of(item, copy),
                (stage, done, total) -> {
                    assertEquals("piqa", stage);
                    seen.add(new long[] {done, total});
                    return true;
                });
        assertEquals(2, r.requests());
        assertArrayEquals(r.items().get(0).logprobs(), r.items().get(1).logprobs());
        // Progress comes per native call: both distinct requests go in one.
        assertEquals(2, seen.size());
        assertArrayEquals(new long[] {0, 2}, seen.get(0));
        assertArrayEquals(new long[] {2, 2}, seen.get(1));
    }

    @Test
    void listenerCancels() {
        List<TaskItem> items = TaskData.load(Task.HELLASWAG, TASKS, 2);
        Evaluator ev = new Evaluator(model, Bos.DEFAULT);
        assertThrows(CancelledException.class, () -> ev.evaluate(Task.HELLASWAG, items,
                (stage, done, total) -> done < 3));
        assertThrows(IllegalArgumentException.class, () -> ev.evaluate(Task.PIQA, items, null));
    }
}
