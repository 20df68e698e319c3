package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.flatquant.eval.TaskItem.Request;
import org.junit.jupiter.api.Test;

/**
 * lm-eval's metrics by hand: {@code acc = argmax(lls) == gold}, {@code acc_norm = argmax(lls / len(choice)) ==
 * gold} with lengths in code points, LAMBADA {@code acc = is_greedy}, {@code perplexity = exp(-mean(lls))}, and
 * {@code mean_stderr = sample_stddev / sqrt(n)}.
 */
class ScoringTest {
    private static TaskItem item(Task task, int gold, String... choices) {
        List<Request> reqs = new java.util.ArrayList<>();
        for (String c : choices) {
            reqs.add(new Request("ctx", " " + c));
        }
        return new TaskItem(task, 0, reqs, gold, List.of(choices));
    }

    @Test
    void accAndAccNorm() {
        // lls -4 and -6; per character: -4/2 = -2 and -6/6 = -1, so acc picks 0 and acc_norm picks 1.
        TaskItem it = item(Task.PIQA, 1, "ab", "abcdef");
        ItemResult r = Scoring.score(it, new double[] {-4, -6}, new boolean[] {false, false});
        assertEquals(0, r.pred());
        assertEquals(1, r.predNorm());
        assertEquals(0.0, r.acc());
        assertEquals(1.0, r.accNorm());
    }

    @Test
    void lengthsCountCodePoints() {
        // "😀😀" is 2 characters in Python (4 UTF-16 units): -3/2 = -1.5 beats -4/2 = -2.
        TaskItem it = item(Task.ARC_EASY, 0, "\uD83D\uDE00\uD83D\uDE00", "xy");
        ItemResult r = Scoring.score(it, new double[] {-3, -4}, new boolean[] {false, false});
        assertEquals(0, r.predNorm());
    }

    @Test
    void tiesGoToTheFirstChoice() {
        TaskItem it = item(Task.HELLASWAG, 2, "a", "b", "c", "d");
        ItemResult r = Scoring.score(it, new double[] {-1, -1, -1, -2}, new boolean[4]);
        assertEquals(0, r.pred());
        assertEquals(0.0, r.acc());
    }

    @Test
    void winograndeHasNoAccNorm() {
        TaskItem it = item(Task.WINOGRANDE, 1, "ctx a", "ctx b");
        ItemResult r = Scoring.score(it, new double[] {-5, -3}, new boolean[2]);
        assertEquals(1.0, r.acc());
        assertTrue(Double.isNaN(r.accNorm()));
    }

    @Test
    void lambadaAccIsGreedy() {
        TaskItem it = new TaskItem(Task.LAMBADA_OPENAI, 0, List.of(new Request("ctx", " word")), 0,
                List.of(" word"));
        assertEquals(1.0, Scoring.score(it, new double[] {-0.5}, new boolean[] {true}).acc());
        assertEquals(0.0, Scoring.score(it, new double[] {-0.1}, new boolean[] {false}).acc());
    }

    @Test
    void aggregation() {
        TaskItem it = item(Task.ARC_CHALLENGE, 0, "a", "b");
        List<ItemResult> items = List.of(
                Scoring.score(it, new double[] {-1, -2}, new boolean[2]),
                Scoring.score(it, new double[] {-3, -2}, new boolean[2]),
                Scoring.score(it, new double[] {-1, -2}, new boolean[2]),
                Scoring.score(it, new double[] {-1, -2}, new boolean[2]));
        TaskResult r = Scoring.aggregate(Task.ARC_CHALLENGE, items, 8, 100, 1.0);
        // acc = [1, 0, 1, 1]: mean 0.75, sample sd sqrt((3 * 0.0625 + 0.5625) / 3) = 0.5, stderr 0.5 / 2.
        assertEquals(0.75, r.acc(), 1e-15);
        assertEquals(0.25, r.accStderr(), 1e-15);
        assertEquals(0.75, r.accNorm(), 1e-15);
        assertTrue(Double.isNaN(r.perplexity()));

        TaskItem lam = new TaskItem(Task.LAMBADA_OPENAI, 0, List.of(new Request("c", " w")), 0, List.of(" w"));
        TaskResult l = Scoring.aggregate(Task.LAMBADA_OPENAI, List.of(
                Scoring.score(lam, new double[] {-1}, new boolean[] {true}),
                Scoring.score(lam, new double[] {-3}, new boolean[] {false})), 2, 10, 1.0);
        assertEquals(Math.exp(2), l.perplexity(), 1e-12);
        assertEquals(0.5, l.acc());
        assertTrue(Double.isNaN(l.accNorm()));
        assertTrue(Double.isNaN(Scoring.aggregate(Task.PIQA, List.of(items.get(0)), 2, 2, 0).accStderr()));
    }
}
