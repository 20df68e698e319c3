package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@link Model#loglikelihoods} gives, request by request, what {@link Model#loglikelihood} gives. */
class LoglikelihoodBatchTest {
    static Engine engine;
    static Model model;

    @BeforeAll
    static void load() {
        engine = Engine.cpu(2);
        model = Model.load(engine, TestSupport.storiesModel());
    }

    @AfterAll
    static void close() {
        model.close();
        engine.close();
    }

    @Test
    void aBatchEqualsSingleCalls() {
        List<int[]> contexts = List.of(new int[] {1, 403, 407, 261, 378}, new int[] {1}, new int[] {1, 300, 301, 302});
        List<int[]> continuations = List.of(new int[] {429, 260, 290}, new int[] {403, 407}, new int[] {303});
        Model.LogLikelihood[] batch = model.loglikelihoods(contexts, continuations);
        assertEquals(3, batch.length);
        for (int i = 0; i < 3; i++) {
            Model.LogLikelihood one = model.loglikelihood(contexts.get(i), continuations.get(i));
            assertEquals(one.logprob(), batch[i].logprob(), 0.0, "request " + i);
            assertEquals(one.greedy(), batch[i].greedy(), "request " + i);
            assertTrue(batch[i].logprob() < 0);
        }
        assertEquals(0, model.loglikelihoods(List.of(), List.of()).length);
    }

    @Test
    void badRequestsAreNamed() {
        InvalidArgumentException e = assertThrows(InvalidArgumentException.class,
                () -> model.loglikelihoods(List.of(new int[] {1}, new int[] {1, 2}),
                        List.of(new int[] {5}, new int[] {})));
        assertTrue(e.getMessage().contains("request 1"), e.getMessage());
        assertThrows(InvalidArgumentException.class,
                () -> model.loglikelihoods(List.of(new int[] {1}), List.of(new int[] {2}, new int[] {3})));
        assertThrows(InvalidArgumentException.class,
                () -> model.loglikelihoods(List.of(new int[] {1}), List.of(new int[] {512})));
    }
}
