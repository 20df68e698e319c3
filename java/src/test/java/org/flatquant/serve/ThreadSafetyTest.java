package org.flatquant.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.flatquant.Bos;
import org.flatquant.BusyException;
import org.flatquant.Engine;
import org.flatquant.GenerationOptions;
import org.flatquant.GenerationResult;
import org.flatquant.Model;
import org.flatquant.PerplexityOptions;
import org.flatquant.Session;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The thread contract a server relies on, on the real stories260K model: one model shared by many threads with a
 * session per request gives each request exactly what it gets alone; a session refuses a second caller; and
 * closing a model, a session or an engine that is in use throws {@link IllegalStateException} and leaves it
 * working, never crashing the JVM. Overlaps are forced with latches inside listeners and progress upcalls, so the
 * tests do not depend on timing.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class ThreadSafetyTest {
    static final String[] PROMPTS = {"Once upon a time", "Lily saw a big dog", "The sun was hot", "Tom had a red ball",
        "One day, a little bird", "The cat and the mouse"};
    static final int TOKENS = 24;

    static Path path;
    static Engine engine;
    static Model model;
    static final ExecutorService pool = Executors.newFixedThreadPool(6);

    @BeforeAll
    static void load() {
        path = TestSupport.storiesModel(); // skips the class without the native library or the model
        engine = Engine.cpu(2);
        model = Model.load(engine, path);
    }

    @AfterAll
    static void close() throws InterruptedException {
        pool.shutdownNow();
        pool.awaitTermination(30, TimeUnit.SECONDS);
        if (model != null) {
            model.close();
        }
        if (engine != null) {
            engine.close();
        }
    }

    static GenerationResult generateAlone(Model m, String prompt) {
        try (Session s = m.newSession(256)) {
            return s.generate(m.tokenizer().encode(prompt, Bos.YES), GenerationOptions.greedy(TOKENS), null);
        }
    }

    @Test
    void sharedModelWithASessionPerRequestMatchesSequentialRuns() throws Exception {
        List<GenerationResult> alone = new ArrayList<>();
        float[][] logitsAlone = new float[PROMPTS.length][];
        for (int i = 0; i < PROMPTS.length; i++) {
            alone.add(generateAlone(model, PROMPTS[i]));
            logitsAlone[i] = model.logits(model.tokenizer().encode(PROMPTS[i], Bos.YES));
        }
        CyclicBarrier start = new CyclicBarrier(PROMPTS.length);
        List<Future<?>> done = new ArrayList<>();
        for (int t = 0; t < PROMPTS.length; t++) {
            int first = t;
            done.add(pool.submit(() -> {
                start.await(30, TimeUnit.SECONDS);
                for (int round = 0; round < 3; round++) {
                    int i = (first + round) % PROMPTS.length; // every thread runs different prompts at once
                    assertEquals(alone.get(i), generateAlone(model, PROMPTS[i]), "thread " + first + " prompt " + i);
                    assertArrayEquals(logitsAlone[i], model.logits(model.tokenizer().encode(PROMPTS[i], Bos.YES)),
                            "whole-sequence logits, bit for bit");
                }
                return null;
            }));
        }
        for (Future<?> f : done) {
            f.get(120, TimeUnit.SECONDS);
        }
    }

    @Test
    void aSessionServesOneCallerAtATime() throws Exception {
        try (Session s = model.newSession(128)) {
            CountDownLatch inside = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            Future<GenerationResult> running = pool.submit(() -> s.generate(
                    model.tokenizer().encode("Once", Bos.YES), GenerationOptions.greedy(4), (token, text) -> {
                        inside.countDown();
                        await(release);
                        return true;
                    }));
            assertTrue(inside.await(30, TimeUnit.SECONDS));
            assertThrows(BusyException.class, () -> s.decode(new int[] {1}));
            assertThrows(BusyException.class, s::reset);
            IllegalStateException e = assertThrows(IllegalStateException.class, s::close);
            assertTrue(e.getMessage().contains("running"), e.getMessage());
            IllegalStateException m = assertThrows(IllegalStateException.class, model::close,
                    "the model has an open session");
            assertTrue(m.getMessage().contains("session"), m.getMessage());
            release.countDown();
            assertEquals(4, running.get(30, TimeUnit.SECONDS).tokens().length);
            assertEquals(model.info().vocabSize(), s.decode(new int[] {1}).length, "the session still works");
        }
        assertEquals(model.info().vocabSize(), model.logits(new int[] {1}).length, "the model still works");
    }

    @Test
    void closingAModelWhileAnotherThreadIsInsideANativeCallThrowsAndLeavesItWorking() throws Exception {
        try (Engine e = Engine.cpu(1)) {
            Model m = Model.load(e, path);
            CountDownLatch inside = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            // The progress listener is an upcall from inside fq_model_perplexity: while it waits, the native call
            // is in flight and holds the model.
            Future<Double> ppl = pool.submit(() -> m.perplexity(TestSupport.STORY,
                    PerplexityOptions.defaults().withSeqlen(64), (stage, doneSteps, total) -> {
                        inside.countDown();
                        await(release);
                        return true;
                    }).perplexity());
            assertTrue(inside.await(30, TimeUnit.SECONDS));
            IllegalStateException refused = assertThrows(IllegalStateException.class, m::close);
            assertTrue(refused.getMessage().contains("another thread"), refused.getMessage());
            assertThrows(IllegalStateException.class, e::close, "the engine has an open model");
            release.countDown();
            double value = ppl.get(60, TimeUnit.SECONDS);
            assertTrue(value > 1 && Double.isFinite(value), "the interrupted-by-close call finished: " + value);

            m.close(); // nobody uses it now
            m.close(); // idempotent
            assertThrows(IllegalStateException.class, () -> m.logits(new int[] {1}));
            assertThrows(IllegalStateException.class, m::newSession);
            assertThrows(IllegalStateException.class, () -> m.tokenizer().encode("x"));
        }
    }

    @Test
    void closeRacingWithCallsFromManyThreadsNeverCrashes() throws Exception {
        try (Engine e = Engine.cpu(1)) {
            Model m = Model.load(e, path);
            int[] ids = m.tokenizer().encode(TestSupport.STORY, Bos.YES);
            int[] window = java.util.Arrays.copyOf(ids, Math.min(ids.length, 64));
            CountDownLatch started = new CountDownLatch(4);
            List<Future<Integer>> callers = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                callers.add(pool.submit(() -> {
                    started.countDown();
                    int calls = 0;
                    for (int i = 0; i < 10_000; i++) {
                        try {
                            m.logits(window);
                            m.tokenizer().encode("Once upon a time");
                            calls++;
                        } catch (IllegalStateException closed) {
                            return calls; // the model was closed between two calls: refused, not a crash
                        }
                    }
                    return calls;
                }));
            }
            assertTrue(started.await(30, TimeUnit.SECONDS));
            int refusals = 0;
            boolean closed = false;
            for (int attempt = 0; attempt < 100_000 && !closed; attempt++) {
                try {
                    m.close();
                    closed = true;
                } catch (IllegalStateException busy) {
                    refusals++;
                }
            }
            for (Future<Integer> f : callers) {
                f.get(120, TimeUnit.SECONDS);
            }
            if (!closed) {
                m.close(); // every caller has finished
            }
            assertThrows(IllegalStateException.class, () -> m.logits(window));
            System.out.println("close attempts refused while calls were running: " + refusals);
        }
    }

    static void await(CountDownLatch latch) {
        try {
            if (!latch.await(60, TimeUnit.SECONDS)) {
                throw new AssertionError("latch not released");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }
}
